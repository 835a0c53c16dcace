"""Requests on ``P/api/<resource>/<action>`` in, replies out (contract section 4).

The router owns the envelope: size limit, JSON parsing, reply routing (MQTT 5 Response Topic or
``reply_to``), ``request_id`` echo, idempotency and error mapping. Endpoints only see validated
parameters and a transaction, and return the success body. A reply is published only after the
transaction committed, so "ok" always means durable.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import aiomqtt

from gateway.api.errors import ApiError, RecordedRefusal, invalid
from gateway.api.params import Field, fields_of, validate
from gateway.api.pin_guard import PinGuard
from gateway.clock import isoformat
from gateway.logs import get_logger, log_context
from gateway.model import Json
from gateway.mqtt import NO_WAIT, MqttSession, NotConnected, shown_topic
from gateway.store import Priority, Store, Tx
from gateway.store.history import IDEMPOTENCY_WINDOW
from gateway.store.scrub import note_reply
from gateway.topics import topic_problem

log = get_logger("gateway.api")

MAX_REQUEST_BYTES = 64 * 1024
#: Larger requests cannot even be read for their reply address (Response Topic still works).
MAX_PARSED_FOR_REFUSAL = 1024 * 1024
MAX_KEY_LENGTH = 256
#: ``reply_to`` is held to less than the broker allows: a reply address, not a payload.
MAX_REPLY_TO = 1024
#: No parameter nests deeper than a list of strings; this leaves room for odd ``request_id``s.
MAX_DEPTH = 16
#: No parameter needs a longer number; far below Python's int/str conversion limit (4300).
MAX_INT_DIGITS = 100
_SURROGATE = re.compile("[\ud800-\udfff]")
#: Requests served at once; more wait their turn instead of piling up work.
CONCURRENCY = 64

Handler = Callable[[Tx, Any], Json]
_P = TypeVar("_P")


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str  # "<resource>/<action>", e.g. "devices/get"
    fields: Mapping[str, Field]
    handler: Handler  # takes ``params`` built from the checked fields, or the dict of them
    writes: bool = False  # runs in a write transaction and honours idempotency_key
    params: Callable[..., Any] | None = None  # the handler's typed parameter object
    #: A guest may be at the door (a pull): served before every other request and lock pass,
    #: without waiting for one of the :data:`CONCURRENCY` places.
    urgent: bool = False
    #: The device whose PIN a request tests, from its parameters (None: it tests none): such
    #: requests are rate limited (:class:`gateway.api.pin_guard.PinGuard`).
    pin_lookup: Callable[[Any], str | None] | None = None

    @classmethod
    def typed(
        cls,
        name: str,
        params: type[_P],
        handler: Callable[[Tx, _P], Json],
        *,
        writes: bool = False,
        urgent: bool = False,
        pin_lookup: Callable[[_P], str | None] | None = None,
    ) -> Endpoint:
        """An endpoint whose handler takes ``params`` (see ``gateway.api.params.param``)."""
        return cls(name, fields_of(params), handler, writes, params, urgent, pin_lookup)

    def arguments(self, checked: dict[str, Any]) -> Any:
        """What the handler is called with, from the checked fields."""
        return checked if self.params is None else self.params(**checked)


@dataclass(frozen=True, slots=True)
class Reply:
    topic: str
    correlation_data: bytes | None
    body: Json


class Router:
    def __init__(
        self,
        store: Store,
        prefix: str,
        endpoints: Iterable[Endpoint],
        pin_guard: PinGuard | None = None,
    ) -> None:
        self._store = store
        self.pin_guard = pin_guard  # a reload replaces it with the new limits
        self._api_root = f"{prefix}/api/"
        self._endpoints = {e.name: e for e in endpoints}
        self._slots = asyncio.Semaphore(CONCURRENCY)

    @property
    def topic_filter(self) -> str:
        return self._api_root + "#"

    @property
    def urgent_topics(self) -> list[str]:
        """The topics of the urgent endpoints (served by ``gateway.api.urgent_lane``)."""
        return [self._api_root + e.name for e in self.endpoints if e.urgent]

    @property
    def endpoints(self) -> list[Endpoint]:
        """What is served, as declared, by name: tests derive their requests from it."""
        return [self._endpoints[name] for name in sorted(self._endpoints)]

    async def serve(self, message: aiomqtt.Message, session: MqttSession) -> None:
        """Handle one request message and publish its reply, if it asked for one."""
        topic = message.topic.value
        endpoint = self._endpoints.get(topic.removeprefix(self._api_root))
        async with NO_WAIT if endpoint is not None and endpoint.urgent else self._slots:
            reply = await self.handle(
                topic,
                message.payload if isinstance(message.payload, bytes) else b"",
                response_topic=getattr(message.properties, "ResponseTopic", None),
                correlation_data=getattr(message.properties, "CorrelationData", None),
            )
        if reply is None:
            return
        try:
            payload = encode_reply(reply.body)
            await session.publish(
                reply.topic, payload, qos=1, correlation_data=reply.correlation_data, reply=True
            )
        except (NotConnected, TimeoutError) as exc:
            # The client retries with its idempotency key; the change itself is committed.
            log.warning("api.reply_lost", topic=shown_topic(reply.topic), reason=str(exc))
        except Exception:  # a reply that cannot be sent must never take the daemon down
            log.exception("api.reply_failed", topic=shown_topic(reply.topic))

    async def handle(
        self,
        topic: str,
        payload: bytes,
        *,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
    ) -> Reply | None:
        """Everything but the publish: separated so tests and ``lockgate call`` share it.

        None when there is nowhere to reply: no reply address, or one the broker would refuse
        (publishing there would cost the gateway its connection). A request with an address
        that cannot be answered is not carried out either.
        """
        name = topic.removeprefix(self._api_root)
        refusal: ApiError | None = None
        try:
            body = parse_request(payload)
        except ApiError as exc:
            body, refusal = _envelope(payload), exc
        request_id = _echoable(body.get("request_id"))
        if response_topic is not None and (problem := topic_problem(response_topic)):
            _unanswerable(name, f"Response Topic {problem}", request_id)
            return None
        try:
            reply_to = _reply_to(body)
        except ApiError as exc:
            if response_topic is None:
                _unanswerable(name, exc.message, request_id)
                return None
            reply_to, refusal = None, refusal or exc
        reply_to = response_topic or reply_to
        try:
            if refusal is not None:
                raise refusal
            endpoint = self._endpoints.get(name)
            if endpoint is None:
                raise ApiError("unknown_endpoint", f"there is no endpoint '{name}'")
            with log_context(request_id=_loggable(request_id), endpoint=name):
                result = await self._run(endpoint, body, reply_to)
            reply_body: Json = {"ok": True, "request_id": request_id, **result}
        except ApiError as refused:
            guard = self.pin_guard
            answer = refused if guard is None else guard.screen(refused, reply_to)
            reply_body = _error(request_id, answer)
            log.info("api.refused", endpoint=topic, error=answer.type, message=answer.message)
        except sqlite3.OperationalError as exc:
            # A full or failing disk: the transaction rolled back, so nothing changed. Say so.
            log.error("api.storage_failed", endpoint=topic, reason=str(exc))  # noqa: TRY400 (no traceback per request)
            reply_body = _error(
                request_id,
                ApiError(
                    "internal_error",
                    f"the gateway could not store the change ({exc}); nothing was changed",
                ),
            )
        except Exception:
            log.exception("api.internal_error", endpoint=topic)
            reply_body = _error(
                request_id, ApiError("internal_error", "the gateway failed to handle the request")
            )
        if reply_to is None:
            return None
        return Reply(reply_to, correlation_data, reply_body)

    async def _run(self, endpoint: Endpoint, body: dict[str, Any], client: str | None) -> Json:
        params = validate(body, endpoint.fields)
        key = _idempotency_key(body)
        arguments = endpoint.arguments(params)
        if self.pin_guard is not None and endpoint.pin_lookup is not None:
            device_id = endpoint.pin_lookup(arguments)
            if device_id is not None:
                self.pin_guard.check(device_id, client)
        if not endpoint.writes:
            return await self._store.read(lambda tx: endpoint.handler(tx, arguments))
        request = fingerprint(endpoint.name, params)
        outcome = await self._store.write(
            lambda tx: _recorded(lambda: _idempotent(tx, endpoint, arguments, key, request)),
            priority=Priority.URGENT if endpoint.urgent else Priority.REQUEST,
        )
        if isinstance(outcome, RecordedRefusal):
            raise outcome  # after the commit: its record is kept
        return outcome


def _recorded(run: Callable[[], Json]) -> Json | RecordedRefusal:
    """Run a write unit; a :class:`RecordedRefusal` is returned, not raised, so the unit
    commits (a raised one would roll the record back with everything else)."""
    try:
        return run()
    except RecordedRefusal as exc:
        return exc


def _idempotent(tx: Tx, endpoint: Endpoint, arguments: Any, key: str | None, request: str) -> Json:
    """One write request as one unit: its first reply again if ``key`` was seen (contract
    section 4), else the handler's, stored under ``key``."""
    if key is not None:
        first = tx.fetchone(
            "SELECT endpoint, fingerprint, reply FROM idempotency"
            " WHERE key = ? AND created_at >= ?",
            (key, isoformat(tx.now - IDEMPOTENCY_WINDOW)),
        )
        if first is not None:
            # Rows from before fingerprints (NULL) can only be held to their endpoint.
            if first["endpoint"] != endpoint.name or first["fingerprint"] not in (None, request):
                raise invalid(
                    "idempotency_key",
                    "was already used for a different request within the last 24 hours;"
                    " give every distinct request its own key",
                )
            stored: Json = json.loads(first["reply"])
            return stored
    result = endpoint.handler(tx, arguments)
    if key is not None:
        # Expired records are deleted by the history pruner (gateway.store.history).
        tx.execute(
            "INSERT OR REPLACE INTO idempotency"
            " (key, endpoint, fingerprint, reply, created_at) VALUES (?, ?, ?, ?, ?)",
            (key, endpoint.name, request, json.dumps(result), isoformat(tx.now)),
        )
        note_reply(tx, key, result)
    return result


# -- reading a request ------------------------------------------------------------------------


class _NotJson(ValueError):
    """A JSON text Python would accept but RFC 8259 (or any sane reader) would not."""


def _refuse_constant(literal: str) -> Any:
    raise _NotJson(f"{literal} is not a JSON value")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _NotJson(f"a number has more than {MAX_INT_DIGITS} digits")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJson(f"the number {text[:20]} is out of range")
    return value


def parse_request(payload: bytes) -> dict[str, Any]:
    """The request object, or ApiError: oversized, not strict JSON, not an object, nested too
    deeply, or holding a string that is not Unicode text (a lone surrogate)."""
    if len(payload) > MAX_REQUEST_BYTES:
        raise ApiError(
            "payload_too_large",
            f"request is {len(payload)} bytes; the limit is {MAX_REQUEST_BYTES}",
        )
    try:
        body = json.loads(
            payload,
            parse_constant=_refuse_constant,
            parse_int=_bounded_int,
            parse_float=_finite_float,
        )
    except UnicodeDecodeError:
        raise invalid("payload", "is not valid JSON (not UTF-8)") from None
    except RecursionError:
        raise invalid("payload", f"is nested more than {MAX_DEPTH} levels deep") from None
    except json.JSONDecodeError as exc:
        raise invalid("payload", f"is not valid JSON ({exc.msg})") from None
    except ValueError as exc:  # _NotJson, or anything else json.loads gives up on
        raise invalid("payload", f"is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise invalid("payload", "must be a JSON object")
    _check_values(body)
    return body


def _check_values(body: dict[str, Any]) -> None:
    """Refuse what parsed but cannot be meant: deep nesting, and strings with lone surrogates
    (JSON's ``\\ud800`` escape yields them; they cannot be stored, logged or echoed as UTF-8).
    Iterative, so no input can exhaust the stack."""
    pending: list[tuple[str, Any, int]] = [(k, v, 1) for k, v in body.items()]
    for key in body:
        if _SURROGATE.search(key):
            raise invalid(_shown_name(key), "a field name contains a lone surrogate")
    while pending:
        path, value, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise invalid("payload", f"is nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise invalid(path, "contains a lone surrogate, which is not Unicode text")
        elif isinstance(value, list):
            pending.extend((f"{path}[{i}]", v, depth + 1) for i, v in enumerate(value))
        elif isinstance(value, dict):
            for key, v in value.items():
                if _SURROGATE.search(key):
                    raise invalid(path, "a field name contains a lone surrogate")
                pending.append((f"{path}.{key}", v, depth + 1))


def _envelope(payload: bytes) -> dict[str, Any]:
    """Only to address a refusal: a request that was refused before it could be read (too
    large, not strict JSON) is parsed leniently for its ``reply_to`` and ``request_id``, when
    it is not absurdly large, and never executed."""
    if len(payload) > MAX_PARSED_FOR_REFUSAL:
        return {}
    try:
        body = json.loads(payload, parse_constant=lambda _: None, parse_int=_int_or_none)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(body, dict):
        return {}
    return {k: body[k] for k in ("reply_to", "request_id") if k in body}


def _int_or_none(text: str) -> int | None:
    try:
        return _bounded_int(text)
    except ValueError:
        return None


def _echoable(request_id: Any) -> Any:
    """``request_id`` as it can be echoed in a strict JSON reply, else None (e.g. a lone
    surrogate): a client always gets a reply it can parse, if not its own id back."""
    try:
        strict_json(request_id)
    except (ValueError, RecursionError):
        return None
    return request_id


def strict_json(value: Any) -> bytes:
    """Compact UTF-8 JSON that any RFC 8259 reader accepts: no NaN, no lone surrogates.

    Raises ValueError (UnicodeEncodeError is one) for anything else.
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def encode_reply(body: Json) -> bytes:
    """The reply as sent: strict JSON, or a bare ``internal_error`` if the body cannot be."""
    try:
        return strict_json(body)
    except (ValueError, RecursionError):
        log.exception("api.reply_unencodable")
        return strict_json(
            _error(None, ApiError("internal_error", "the gateway failed to encode its reply"))
        )


def fingerprint(endpoint: str, params: Mapping[str, Any]) -> str:
    """What an idempotency key is bound to: the endpoint and its validated parameters, in a
    canonical form (so ``Z`` and ``+00:00``, or upper- and lower-case ids, are one request)."""
    canonical = json.dumps(
        [endpoint, params],
        sort_keys=True,
        separators=(",", ":"),
        default=_canonical,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return isoformat(value)
    raise TypeError(f"no canonical form for {type(value).__name__}")


# -- the reply address ------------------------------------------------------------------------


def _error(request_id: Any, exc: ApiError) -> Json:
    return {
        "ok": False,
        "request_id": request_id,
        "error": {"type": exc.type, "message": exc.message},
    }


def _reply_to(body: Mapping[str, Any]) -> str | None:
    value = body.get("reply_to")
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid("reply_to", "must be a string (an MQTT topic name)")
    problem = topic_problem(value)
    if problem is None and value.startswith("$"):
        problem = "starts with '$' (reserved for the broker)"
    if problem is None and len(value) > MAX_REPLY_TO:
        problem = f"is longer than {MAX_REPLY_TO} characters"
    if problem is not None:
        raise invalid("reply_to", f"must be an MQTT topic name the broker accepts: it {problem}")
    return value


def _unanswerable(endpoint: str, reason: str, request_id: Any) -> None:
    """A request whose reply address is unusable is neither carried out nor answered; only
    the log tells (never its parameters: they may hold a PIN)."""
    log.warning(
        "api.unanswerable",
        endpoint=shown_topic(endpoint),
        reason=reason,
        request_id=_loggable(request_id),
    )


def _shown_name(name: str) -> str:
    return ascii(name[:MAX_KEY_LENGTH])[1:-1]


def _idempotency_key(body: Mapping[str, Any]) -> str | None:
    key = body.get("idempotency_key")
    if key is None:
        return None
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
        raise invalid("idempotency_key", f"must be a string of 1-{MAX_KEY_LENGTH} characters")
    return key


def _loggable(request_id: Any) -> str | None:
    return None if request_id is None else str(request_id)[:100]
