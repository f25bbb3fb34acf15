"""A Matrix homeserver on gevent that scales out with worker processes."""

__version__ = "0.1.0"
