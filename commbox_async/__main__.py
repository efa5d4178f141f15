"""``python -m commbox_async``: the same as the ``commbox-async`` command."""

from .cli import main

raise SystemExit(main())
