"""Log output: plain text for people (the default), or JSON lines for log pipelines
(`--log-format json` / CITYFLOW_LOG_FORMAT=json): one object per line with time (UTC, ISO 8601),
level, logger, message, the worker's id (host:pid) and, where the record knows them, the Kafka
topic and partition (from `extra=` or the `topic=... partition=N` pairs our messages carry).
Values are JSON-encoded, so a device id with quotes or newlines cannot break a line."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_PAIR = re.compile(r"\b(topic|partition)=([A-Za-z0-9._-]+)")
_WORKER = f"{socket.gethostname()}:{os.getpid()}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            "worker": _WORKER,
        }
        found = dict(_PAIR.findall(message))
        for key in ("topic", "partition"):
            value = getattr(record, key, None) if hasattr(record, key) else found.get(key)
            if value is not None:
                out[key] = int(value) if key == "partition" and str(value).isdigit() else value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


_QUOTED_SECRET = re.compile(r"""(\b\w*(?:password|secret)\w*['"]?\s*[:=]\s*)(['"])(?:(?!\2).)*\2""", re.IGNORECASE)
_BARE_SECRET = re.compile(r"""(\b\w*(?:password|secret)\w*=)(?!['"])[^\s,;)}\]]+""", re.IGNORECASE)


class RedactSecrets(logging.Filter):
    """Masks password and secret values in every record. Client libraries log their whole
    configuration at DEBUG (kafka-python: "Starting KafkaAdminClient with configuration: {...,
    'sasl_plain_password': '...'}"), so `--verbose` would otherwise print the SASL password."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _BARE_SECRET.sub(r"\1***", _QUOTED_SECRET.sub(r"\1\2***\2", message))
        if masked != message:
            record.msg, record.args = masked, ()
        return True


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler on stderr that survives stderr being replaced: tests and embedders swap
    sys.stderr and close the old one, and a handler holding a closed stream turns every later
    log line into a "Logging error" traceback; it then moves to the process's own stderr. (It
    keeps the stream it was made with otherwise: Faust redirects sys.stderr into logging, and
    writing there would loop.)"""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self.stream, "closed", False):
            self.stream = sys.__stderr__  # the process's own stderr, not whatever replaced it
        super().emit(record)


def logging_dict(log_format: str, level: str) -> dict[str, Any]:
    """A logging.config.dictConfig for `log_format` ('text' or 'json') on stderr: what the CLI
    installs, and what the worker hands to Faust (which otherwise installs its own format)."""
    formatter: dict[str, Any] = ({"()": "jobs.logs.JsonFormatter"} if log_format == "json"
                                 else {"format": TEXT_FORMAT})
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"cityflow": formatter},
        "filters": {"secrets": {"()": "jobs.logs.RedactSecrets"}},
        "handlers": {"stderr": {"class": "jobs.logs.StderrHandler", "formatter": "cityflow",
                                "filters": ["secrets"]}},
        "root": {"level": level, "handlers": ["stderr"]},
    }


def configure_logging(log_format: str, level: str) -> None:
    import logging.config

    logging.config.dictConfig(logging_dict(log_format, level))


__all__ = ["JsonFormatter", "RedactSecrets", "configure_logging", "logging_dict"]
