"""The paybeam version (setup.py reads it from here)."""

__version__ = "0.1.0"


def paybeam_version() -> str:
    return __version__
