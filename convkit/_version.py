"""The package version (one place, imported by the package and the HTTP client)."""

__version__ = "0.1.0"
