"""tentacle: a worker agent daemon, its client library, executor and hub."""

__version__ = "0.1.0"
