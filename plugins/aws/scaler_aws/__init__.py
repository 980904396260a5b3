"""AWS EC2 provider plugin for clearml-scaler (entry point ``aws``)."""

__version__ = "0.1.0"
