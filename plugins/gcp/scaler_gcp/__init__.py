"""Google Compute Engine provider plugin for clearml-scaler (entry point ``gcp``)."""

__version__ = "0.1.0"
