"""devsync: keep local Docker images in sync with what the team has deployed."""

__version__ = "0.1.0"
