"""Log lines: `WARDEN_LOG_FORMAT=text` (default) or `json`, one record per line.

Every line has the time (ISO 8601, UTC), level, logger and message, and — when the line was
logged while a request or an action was being handled (`bot/logcontext.py`) — its
`trace_id`, `request_id`, `action_id` and `owner` (the replica). JSON lines are objects with
those keys (python-json-logger); text lines append them as `key=value`.

Every line is redacted (`bot.redact`: tokens, keys, passwords in URLs), the message and any
exception text alike. A text line never spans two lines: newlines and other control
characters in the message or a traceback are escaped, so text someone wrote can never forge
a log line. Bolt's and slack_sdk's loggers propagate to the root logger and go through the
same handler.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from pythonjsonlogger.core import RESERVED_ATTRS, merge_record_extra
from pythonjsonlogger.json import JsonFormatter

from bot.logcontext import FIELDS, ids
from bot.redact import redact

FORMATS = ("text", "json")
# Loggers of the libraries Warden runs on: they must reach Warden's handler, not their own.
LIBRARY_LOGGERS = ("slack_bolt", "slack_sdk", "apscheduler", "waitress", "alembic", "anthropic")

# What can break a line or fake one: C0 controls, DEL, C1 controls (NEL among them) and the
# Unicode line and paragraph separators.
_BREAKERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: str) -> str:
    """`text` with every character that could end or fake a line escaped."""
    return _BREAKERS.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def _clean(text: str) -> str:
    # redact() drops most control characters; newlines, carriage returns and tabs survive
    # it (a private key spans lines) and are escaped by the text format.
    return redact(text)


def utc_time(record: logging.LogRecord) -> str:
    at = datetime.fromtimestamp(record.created, tz=UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


class ContextFilter(logging.Filter):
    """Stamps the ids known where a record is logged onto it (an id passed explicitly with
    `extra=` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in ids().items():
            if not getattr(record, name, None):
                setattr(record, name, value)
        return True


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    text = ""
    if record.exc_info:
        text = formatter.formatException(record.exc_info)
    elif record.exc_text:
        text = record.exc_text
    if record.stack_info:
        text = (text + "\n" if text else "") + formatter.formatStack(record.stack_info)
    return _clean(text)


class TextFormatter(logging.Formatter):
    """`TIME LEVEL logger: message trace_id=… request_id=… action_id=… owner=…`, one line."""

    def format(self, record: logging.LogRecord) -> str:
        message = one_line(_clean(record.getMessage()))
        line = f"{utc_time(record)} {record.levelname} {record.name}: {message}"
        for name in FIELDS:
            value = getattr(record, name, None)
            if value:
                line += f" {name}={one_line(str(value))}"
        exception = _exception_text(self, record)
        if exception:
            line += " exception=" + one_line(exception)
        return line


_EXCEPTION = "_warden_exception"
_SKIP = set(RESERVED_ATTRS) | set(FIELDS) | {"message", "time", "level", "logger", _EXCEPTION}


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: time, level, logger, message, the ids, `exc_info`, and any
    `extra=` fields (strings redacted)."""

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = utc_time(record)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = _clean(record.getMessage())
        for name in FIELDS:
            value = getattr(record, name, None)
            if value:
                log_data[name] = str(value)
        extra: dict[str, Any] = {}
        merge_record_extra(record, extra, reserved=_SKIP)
        for key, value in extra.items():
            log_data[key] = _clean(value) if isinstance(value, str) else value
        exception = record.__dict__.get(_EXCEPTION)
        if exception:
            log_data["exc_info"] = exception

    def format(self, record: logging.LogRecord) -> str:
        # The base class would add the exception unredacted: hand add_fields the redacted
        # text instead, and put the record back as it was (other handlers may format it).
        saved = record.exc_info, record.exc_text, record.stack_info
        record.__dict__[_EXCEPTION] = _exception_text(self, record)
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved
            record.__dict__.pop(_EXCEPTION, None)


def formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        return JsonLineFormatter(json_ensure_ascii=True)
    if fmt == "text":
        return TextFormatter()
    raise ValueError(f"unknown log format {fmt!r} (use one of: {', '.join(FORMATS)})")


def handler(fmt: str = "text", stream: TextIO | None = None) -> logging.Handler:
    """A handler writing Warden's log lines in `fmt` to `stream` (stderr by default)."""
    out = logging.StreamHandler(stream if stream is not None else sys.stderr)
    out.setFormatter(formatter(fmt))
    out.addFilter(ContextFilter())
    out.set_name("warden")
    return out


def configure(fmt: str = "text", *, verbose: bool = False) -> logging.Handler | None:
    """Send every log line, Warden's and its libraries', through one Warden handler on the
    root logger. Like `logging.basicConfig`, it leaves alone a root logger that already has
    handlers of someone else's (a program embedding Warden, a test runner); then None."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if h.get_name() == "warden"]
    if len(ours) != len(root.handlers):
        return None
    for old in ours:
        root.removeHandler(old)
    installed = handler(fmt)
    root.addHandler(installed)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library.propagate = True
        for own in list(library.handlers):
            library.removeHandler(own)
    if not verbose:
        # The scheduler says "Running job …" at INFO every few seconds for each sweep.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
    return installed
