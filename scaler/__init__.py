"""clearml-scaler: a plugin-based multi-cloud autoscaler for ClearML queues."""

__version__ = "0.1.0"
