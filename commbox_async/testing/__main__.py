"""``python -m commbox_async.testing``: the same as ``commbox-async mock``."""

import sys

from ..cli import main

raise SystemExit(main(["mock", *sys.argv[1:]]))
