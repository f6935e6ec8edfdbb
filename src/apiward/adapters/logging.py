"""Structured logs (structlog), JSON by default, with secrets redacted.

The redaction processor is a safety net: apiward never logs a credential on purpose,
but anything that looks like one of its keys, client secrets (``awcs_...``), refresh
tokens (``awrt_...``), webhook secrets (``whsec_...``), a JWT or a bearer token is
masked before a line is written, wherever it comes from: in the message, in any value,
inside nested dicts, lists, sets and tuples (keys included), in exception messages and
tracebacks, and in objects that are only ``repr``'d on the way out. The same masking
is applied, by ``RedactingFilter``, to the standard library's log records (uvicorn's
"Exception in ASGI application" tracebacks, say).

Lines logged while a request is served carry its ``request_id``: the request
middleware binds it in a context variable (``structlog.contextvars``), which every task
and worker thread started by the request inherits.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_PATTERNS = [
    re.compile(r"\b[A-Za-z0-9]{1,16}_(?:[A-Za-z0-9]{1,16}_)?[A-Za-z0-9_\-]{24,}\b"),  # API keys
    re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*"),  # JWTs
    re.compile(r"(?i)(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}"),  # Authorization values
]


_prefixed: list[re.Pattern[str]] = []
"""The deployment's own prefixes (``aw_``, ``awcs_``, ``awrt_``), set by ``configure``:
they catch its secrets even in a custom alphabet the general pattern does not cover."""


def _mask(match: re.Match[str]) -> str:
    return (match.group(1) + " [REDACTED]") if match.lastindex else "[REDACTED]"


_TRIGGER = re.compile(r"_|eyJ|(?i:bearer|basic)")
"""What every pattern needs: an underscore (keys, prefixed secrets), a JWT's header, or an
Authorization scheme. Text with none of them (most log values) skips the patterns."""


def redact(text: str) -> str:
    if _TRIGGER.search(text) is None:
        return text
    for pattern in (*_PATTERNS, *_prefixed):
        text = pattern.sub(_mask, text)
    return text


def _redact_values(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth > 20:
        return "[REDACTED: nested too deep]"
    if isinstance(value, dict):
        return {
            _redact_values(k, depth + 1): _redact_values(v, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_values(v, depth + 1) for v in value]
    if isinstance(value, bytes | bytearray):
        return redact(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, BaseException):
        return redact(f"{type(value).__name__}: {value}")
    # Anything else would be repr'd by the renderer, unmasked: mask its repr now.
    return redact(repr(value))


UNREDACTED = "unredacted"
"""A line may name fields to leave as they are: only the log mailer does, for the body of
an email it writes to the log instead of sending it (development without SMTP)."""


def redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    keep = event_dict.pop(UNREDACTED, ())
    for key, value in event_dict.items():
        if key not in keep:
            event_dict[key] = _redact_values(value)
    return event_dict


class RedactingFilter(logging.Filter):
    """Masks credentials in standard-library log records, tracebacks included."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line
            record.msg, record.args = redact(str(record.msg)), None
        else:
            clean = redact(message)
            if clean != message:
                record.msg, record.args = _redacted_parts(record, clean)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _redacted_parts(record: logging.LogRecord, clean: str) -> tuple[Any, Any]:
    """The record's format and arguments with credentials masked, kept apart.

    Formatters may read the arguments themselves (uvicorn's access formatter unpacks
    the client, method, path, version and status), so they stay a tuple of the same
    length when masking each one masks the line; otherwise the line is the masked text.
    """
    args = record.args
    if isinstance(args, tuple) and isinstance(record.msg, str):
        masked = tuple(redact(arg) if isinstance(arg, str) else arg for arg in args)
        try:
            if redact(record.msg) % masked == clean:
                return redact(record.msg), masked
        except (TypeError, ValueError):
            pass
    return clean, None


def _filter_stdlib_handlers() -> None:
    for name in (None, "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())


class _Stderr:
    """Standard error as it is when a line is written (a test runner swaps it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


STDERR: Any = _Stderr()


def secret_prefixes(key_prefix: str) -> tuple[str, ...]:
    """The prefixes of a deployment's own secrets: keys, client secrets, refresh tokens,
    emailed links, webhook secrets."""
    return (key_prefix, key_prefix + "cs", key_prefix + "rt", key_prefix + "el", "whsec")


def configure(
    level: str = "info",
    fmt: str = "json",
    stream: Any = None,
    *,
    secret_prefixes: tuple[str, ...] = (),
) -> None:
    """Configure structlog; ``secret_prefixes`` are the deployment's own key prefixes."""
    _prefixed[:] = [
        re.compile(rf"\b{re.escape(prefix)}_[^\s\"'`,;|<>(){{}}\[\]]{{16,}}")
        for prefix in secret_prefixes
    ]
    _filter_stdlib_handlers()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        # Without a stream, each line goes to the standard output of the moment it is
        # written, not to the one there was at configuration (which a caller that
        # captured it, such as a command run in a test, may since have closed).
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "apiward") -> Any:
    return structlog.get_logger(name)
