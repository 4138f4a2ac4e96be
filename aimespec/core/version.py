"""The package's version: one place, read by every JSON document and `--version`."""

__version__ = "0.1.0"
