"""Open Clanker: a small, fast, self-hosted AI assistant gateway."""

__version__ = "0.1.0"

__all__ = ["__version__"]
