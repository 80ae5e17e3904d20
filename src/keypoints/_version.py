"""The package version (a leaf module, so that any module may read it without an import cycle)."""

__version__ = "0.1.0"
