"""The package version, in a module of its own so that any module can read it without
importing the package's public face (and everything below it)."""

__version__ = "0.6.0"
