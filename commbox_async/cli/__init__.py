"""The ``commbox-async`` command (also ``python -m commbox_async``); needs the ``cli`` extra.

One module per job: ``_main`` (the guard: exit statuses, Ctrl-C, no traceback, no token),
``_args`` (argparse), one module per command (``_get``, ``_fetch``, ``_mock``, ``_demo``), the
job loop ``fetch`` and ``demo`` share (``_job``), its input (``_sources``, ``_input``), its
output (``_output``), ``--resume`` (``_resume``) and the terminal (``_progress``).
"""

from ._main import main

__all__ = ["main"]
