"""BK LOG: ingest, full-text search and async export of log lines."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bklog")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
