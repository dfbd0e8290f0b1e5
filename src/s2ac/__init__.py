"""s2ac: learned atmospheric correction of Sentinel-2 (L1C TOA -> L2A SR) as an MLOps system."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("s2ac")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
