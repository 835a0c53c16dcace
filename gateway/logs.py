"""Structured logging for the gateway.

JSON lines when stdout is not a terminal (journald keeps one object per line), the console
renderer when it is. PINs and passwords are secrets: a redaction processor masks them on every
line above DEBUG, and tracebacks are rendered without frame locals so a PIN held in a local
variable cannot leak through an exception either.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any, Final, TextIO, cast

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

__all__ = [
    "REDACTED",
    "REDACTED_KEYS",
    "bind_context",
    "clear_context",
    "configure_logging",
    "get_logger",
    "log_context",
    "redact_secrets",
    "unbind_context",
]

#: Keys whose values are masked on lines above DEBUG, compared case-insensitively and at any
#: depth of nested dicts and lists. Whole containers (`codes`, `slots`, `payload`) are masked
#: because lock payloads carry PINs under driver-specific names we cannot enumerate.
REDACTED_KEYS: Final = frozenset(
    {
        "code",
        "codes",
        "pin",
        "pin_code",
        "new_code",
        "old_code",
        "usercode",
        "password",
        "secret",
        "slots",
        "payload",
    }
)
REDACTED: Final = "***"

_LEVELS: Final[Mapping[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

_STANDARD_LEVELS: Final = (
    logging.DEBUG,
    logging.INFO,
    logging.WARNING,
    logging.ERROR,
    logging.CRITICAL,
)

# Library records below this level are dropped: paho and aiomqtt are chatty at INFO/DEBUG.
_LIBRARY_MIN_LEVEL: Final = logging.WARNING

_stdlib_handler: logging.Handler | None = None


def _redact(value: Any) -> Any:
    """Copy containers instead of mutating them: the caller may still use the object."""
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and k.lower() in REDACTED_KEYS else _redact(v)
            for k, v in value.items()
        }
    if type(value) is list:
        return [_redact(v) for v in value]
    if type(value) is tuple:  # exact type only: exc_info tuples and namedtuples keep their shape
        return tuple(_redact(v) for v in value)
    return value


def redact_secrets(_logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Mask secrets on every line above DEBUG; DEBUG keeps them so a bench session can see PINs."""
    level = str(event_dict.get("level", method_name)).lower()
    if level == "debug":
        return event_dict
    return cast(EventDict, _redact(event_dict))


class _StdlibToStructlog(logging.Handler):
    """Send library records (aiomqtt, paho, asyncio) to the same output as our own lines."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            log = get_logger(record.name)
            kw: dict[str, Any] = {}
            if record.exc_info and record.exc_info[0] is not None:
                kw["exc_info"] = record.exc_info
            # structlog knows the five standard levels only; custom ones round down.
            level = max(
                (lv for lv in _STANDARD_LEVELS if lv <= record.levelno), default=logging.DEBUG
            )
            log.log(level, record.getMessage(), **kw)
        except Exception:  # noqa: BLE001 - logging must never take the gateway down
            self.handleError(record)


class _NamedPrintLogger(structlog.PrintLogger):
    """A PrintLogger that remembers the name given to :func:`get_logger`."""

    def __init__(self, file: TextIO, name: str | None) -> None:
        super().__init__(file)
        self.name = name


class _PrintLoggerFactory:
    """Like structlog's, but ``None`` means ``sys.stdout`` as it is now, not at import time."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream

    def __call__(self, *args: Any) -> _NamedPrintLogger:
        name = args[0] if args and isinstance(args[0], str) else None
        return _NamedPrintLogger(self._stream if self._stream is not None else sys.stdout, name)


def _add_logger_name(logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> EventDict:
    name = getattr(logger, "name", None)
    if name is not None:
        event_dict.setdefault("logger", name)
    return event_dict


def _parse_level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    try:
        return _LEVELS[level.strip().lower()]
    except KeyError:
        raise ValueError(
            f"unknown log level {level!r} (expected one of {', '.join(sorted(_LEVELS))})"
        ) from None


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or file-like objects without isatty
        return False


def configure_logging(
    level: str = "info",
    *,
    json: bool | None = None,
    stream: TextIO | None = None,
) -> None:
    """Set up structlog and the stdlib bridge; safe to call again to change the settings.

    ``stream=None`` writes to whatever ``sys.stdout`` is at the time of each line, so pytest's
    capture and a later redirect keep working.
    """
    global _stdlib_handler  # noqa: PLW0603 - one bridge per process, replaced on reconfigure

    min_level = _parse_level(level)
    target = stream if stream is not None else sys.stdout
    as_json = (not _is_tty(target)) if json is None else json

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: list[Processor]
    if as_json:
        renderer = [
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            structlog.processors.UnicodeDecoder(),
            structlog.processors.JSONRenderer(),
        ]
    else:
        # plain_traceback never prints locals, unlike the Rich formatter that becomes the
        # default as soon as `rich` happens to be installed.
        renderer = [
            structlog.dev.ConsoleRenderer(
                colors=_is_tty(target),
                exception_formatter=structlog.dev.plain_traceback,
            )
        ]

    structlog.configure(
        processors=[*shared, *renderer],
        wrapper_class=structlog.make_filtering_bound_logger(min_level),
        context_class=dict,
        logger_factory=_PrintLoggerFactory(stream),
        # Not cached: tests and `lockgate run` reconfigure after module-level loggers exist.
        cache_logger_on_first_use=False,
    )

    root = logging.getLogger()
    if _stdlib_handler is not None:
        root.removeHandler(_stdlib_handler)
    _stdlib_handler = _StdlibToStructlog(level=max(min_level, _LIBRARY_MIN_LEVEL))
    root.addHandler(_stdlib_handler)
    if root.level == logging.NOTSET or root.level > _stdlib_handler.level:
        root.setLevel(_stdlib_handler.level)


def get_logger(name: str | None = None) -> FilteringBoundLogger:
    """Return a logger that stamps ``logger=name`` on its lines when a name is given."""
    args = () if name is None else (name,)
    return cast(FilteringBoundLogger, structlog.get_logger(*args))


def bind_context(**kv: Any) -> None:
    """Bind keys for the rest of the current task (asyncio copies the context per task)."""
    structlog.contextvars.bind_contextvars(**kv)


def unbind_context(*keys: str) -> None:
    """Remove keys bound with :func:`bind_context` from the current context."""
    structlog.contextvars.unbind_contextvars(*keys)


def clear_context() -> None:
    """Drop every bound key, e.g. at the start of a request handler reused across requests."""
    structlog.contextvars.clear_contextvars()


class log_context:  # lower case: used like the function it was, ``with log_context(k=v):``
    """Bind keys for a block only; earlier values of the same keys come back afterwards.

    What ``structlog.contextvars.bound_contextvars`` does, without its two generators and
    their context managers: every lock worker holds one of these for its whole life."""

    __slots__ = ("_kv", "_saved")

    def __init__(self, **kv: Any) -> None:
        self._kv = kv
        self._saved: dict[str, Any] | None = None

    def __enter__(self) -> None:
        kv = self._kv
        context = structlog.contextvars.get_contextvars()
        self._saved = {k: context[k] for k in context.keys() & kv.keys()} or None
        structlog.contextvars.bind_contextvars(**kv)

    def __exit__(self, *exc_info: object) -> None:
        structlog.contextvars.unbind_contextvars(*self._kv.keys())
        structlog.contextvars.bind_contextvars(**(self._saved or {}))
        self._saved = None
