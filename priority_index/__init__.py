"""Priority Localities Index for UK community-safety partnerships."""

__version__ = "0.1.0"
