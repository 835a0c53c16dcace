"""Requests on ``P/api/<resource>/<action>`` in, replies out (contract section 4).

The router owns the envelope: size limit, JSON parsing, reply routing (MQTT 5 Response Topic or
``reply_to``), ``request_id`` echo, idempotency and error mapping. Endpoints only see validated
parameters and a transaction, and return the success body. A reply is published only after the
transaction committed, so "ok" always means durable.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiomqtt

from gateway.api.errors import ApiError, invalid
from gateway.api.params import Field, validate
from gateway.clock import isoformat
from gateway.logs import get_logger, log_context
from gateway.model import Json
from gateway.mqtt import MqttSession, NotConnected
from gateway.store import Store, Tx

log = get_logger("gateway.api")

MAX_REQUEST_BYTES = 64 * 1024
#: Larger requests cannot even be read for their reply address (Response Topic still works).
MAX_PARSED_FOR_REFUSAL = 1024 * 1024
IDEMPOTENCY_WINDOW = timedelta(hours=24)
MAX_KEY_LENGTH = 256
#: Requests served at once; more wait their turn instead of piling up work.
CONCURRENCY = 64

Handler = Callable[[Tx, dict[str, Any]], Awaitable[Json]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str  # "<resource>/<action>", e.g. "devices/get"
    fields: Mapping[str, Field]
    handler: Handler
    writes: bool = False  # runs in a write transaction and honours idempotency_key


@dataclass(frozen=True, slots=True)
class Reply:
    topic: str
    correlation_data: bytes | None
    body: Json


class Router:
    def __init__(self, store: Store, prefix: str, endpoints: Iterable[Endpoint]) -> None:
        self._store = store
        self._api_root = f"{prefix}/api/"
        self._endpoints = {e.name: e for e in endpoints}
        self._slots = asyncio.Semaphore(CONCURRENCY)

    @property
    def topic_filter(self) -> str:
        return self._api_root + "#"

    def endpoint_names(self) -> list[str]:
        return sorted(self._endpoints)

    async def serve(self, message: aiomqtt.Message, session: MqttSession) -> None:
        """Handle one request message and publish its reply, if it asked for one."""
        async with self._slots:
            reply = await self.handle(
                message.topic.value,
                message.payload if isinstance(message.payload, bytes) else b"",
                response_topic=getattr(message.properties, "ResponseTopic", None),
                correlation_data=getattr(message.properties, "CorrelationData", None),
            )
        if reply is None:
            return
        try:
            await session.publish(
                reply.topic, reply.body, qos=1, correlation_data=reply.correlation_data
            )
        except (NotConnected, TimeoutError) as exc:
            # The client retries with its idempotency key; the change itself is committed.
            log.warning("api.reply_lost", topic=reply.topic, reason=str(exc))
        except Exception:  # a reply that cannot be sent must never take the daemon down
            log.exception("api.reply_failed", topic=reply.topic)

    async def handle(
        self,
        topic: str,
        payload: bytes,
        *,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
    ) -> Reply | None:
        """Everything but the publish: separated so tests and ``lockgate call`` share it."""
        body: Any = None
        reply_to = response_topic
        request_id: Any = None
        try:
            if len(payload) > MAX_REQUEST_BYTES:
                body = _envelope_of_oversized(payload)
                request_id = body.get("request_id")
                raise ApiError(
                    "payload_too_large",
                    f"request is {len(payload)} bytes; the limit is {MAX_REQUEST_BYTES}",
                )
            try:
                body = json.loads(payload)
            except UnicodeDecodeError:
                raise invalid("payload", "is not valid JSON (not UTF-8)") from None
            except json.JSONDecodeError as exc:
                raise invalid("payload", f"is not valid JSON ({exc.msg})") from None
            if not isinstance(body, dict):
                raise invalid("payload", "must be a JSON object")
            request_id = body.get("request_id")
            if reply_to is None:
                reply_to = _reply_to(body)
            name = topic.removeprefix(self._api_root)
            endpoint = self._endpoints.get(name)
            if endpoint is None:
                raise ApiError("unknown_endpoint", f"there is no endpoint '{name}'")
            with log_context(request_id=_loggable(request_id), endpoint=name):
                result = await self._run(endpoint, body)
            reply_body: Json = {"ok": True, "request_id": request_id, **result}
        except ApiError as exc:
            if reply_to is None and isinstance(body, dict):
                reply_to = _safe_reply_to(body)
            reply_body = _error(request_id, exc)
            log.info("api.refused", endpoint=topic, error=exc.type, message=exc.message)
        except Exception:
            log.exception("api.internal_error", endpoint=topic)
            reply_body = _error(
                request_id, ApiError("internal_error", "the gateway failed to handle the request")
            )
        if reply_to is None:
            return None
        return Reply(reply_to, correlation_data, reply_body)

    async def _run(self, endpoint: Endpoint, body: dict[str, Any]) -> Json:
        params = validate(body, endpoint.fields)
        key = _idempotency_key(body)
        if not endpoint.writes:
            async with self._store.reading() as tx:
                return await endpoint.handler(tx, params)
        async with self._store.transaction() as tx:
            if key is not None:
                first = await tx.fetchone(
                    "SELECT endpoint, reply FROM idempotency WHERE key = ? AND created_at >= ?",
                    (key, isoformat(tx.now - IDEMPOTENCY_WINDOW)),
                )
                if first is not None:
                    # The first reply, whatever this repetition says (contract section 4).
                    stored: Json = json.loads(first["reply"])
                    return stored
            result = await endpoint.handler(tx, params)
            if key is not None:
                await tx.execute(
                    "DELETE FROM idempotency WHERE created_at < ?",
                    (isoformat(tx.now - IDEMPOTENCY_WINDOW),),
                )
                await tx.execute(
                    "INSERT OR REPLACE INTO idempotency (key, endpoint, reply, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    (key, endpoint.name, json.dumps(result), isoformat(tx.now)),
                )
            return result


def _envelope_of_oversized(payload: bytes) -> dict[str, Any]:
    """Only to address the refusal: an oversized request is parsed for its ``reply_to`` and
    ``request_id`` when it is not absurdly large, and never executed."""
    if len(payload) > MAX_PARSED_FOR_REFUSAL:
        return {}
    try:
        body = json.loads(payload)
    except ValueError:
        return {}
    if not isinstance(body, dict):
        return {}
    return {k: body[k] for k in ("reply_to", "request_id") if k in body}


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
    if not isinstance(value, str) or not _is_topic_name(value):
        raise invalid("reply_to", "must be an MQTT topic name without wildcards")
    return value


def _safe_reply_to(body: Mapping[str, Any]) -> str | None:
    """The reply topic for an error reply; a bad ``reply_to`` cannot be answered at all."""
    try:
        return _reply_to(body)
    except ApiError:
        return None


def _is_topic_name(topic: str) -> bool:
    return (
        0 < len(topic) <= 1024 and not any(c in topic for c in "+#\0") and not topic.startswith("$")
    )


def _idempotency_key(body: Mapping[str, Any]) -> str | None:
    key = body.get("idempotency_key")
    if key is None:
        return None
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
        raise invalid("idempotency_key", f"must be a string of 1-{MAX_KEY_LENGTH} characters")
    return key


def _loggable(request_id: Any) -> str | None:
    return None if request_id is None else str(request_id)[:100]
