"""Logging setup: one line per action with its reason, as text or JSON."""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and logging.getLogger("scaler").isEnabledFor(logging.DEBUG):
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S")

    def formatException(self, ei):  # type: ignore[no-untyped-def,override]
        # tracebacks only in debug logs; users see the one-line message
        return super().formatException(ei) if logging.getLogger("scaler").isEnabledFor(logging.DEBUG) else ""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).rstrip()


def setup_logging(level: str = "INFO", fmt: str = "text", stream: object = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("scaler")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # the SDKs are chatty at INFO and may print request details: every library logger that sets
    # no level of its own (the cloud SDKs of provider plugins among them) inherits the root's
    # WARNING; these two set one, so they are held at WARNING by name
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("clearml", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
