"""One JSON object per log line, so log pipelines index fields (request_id, reason, variant)
instead of parsing text. Used for our own, KServe's and uvicorn's loggers and for Python's
warnings (log_config.json)."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

# Attributes every LogRecord has; anything else was passed with `extra=` and is emitted as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in ("color_message",):
                document[key] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(document, default=str).decode()


def stderr_handler() -> logging.Handler:
    """log_config.json's handler. Building it also routes Python warnings into logging (logger
    `py.warnings`), where the warnings module would write two plain lines to stderr: every
    process that applies the config (the model server, and each REST worker, which KServe
    configures anew) then writes warnings as JSON lines too. A library's warning stays visible,
    e.g. FastAPI's deprecation of ORJSONResponse, the default response class of KServe's app
    (kserve/model_server.py), once per process: KServe's to change, not ours to hide."""
    logging.captureWarnings(True)
    return logging.StreamHandler(sys.stderr)
