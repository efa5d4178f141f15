"""The installed version, from the package metadata."""

from importlib import metadata

try:
    __version__ = metadata.version("commbox-async")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
