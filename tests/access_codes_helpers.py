"""Shared by the ``test_access_codes_*`` files: calling ``access_codes/*`` and checking refusals."""

from __future__ import annotations

from typing import Any

from gateway.model import Json
from tests.harness import Site


async def refused(site: Site, endpoint: str, **params: Any) -> Json:
    reply = await site.api.call(endpoint, **params)
    assert reply["ok"] is False, reply
    assert set(reply) == {"ok", "request_id", "error"}
    error: Json = reply["error"]
    assert set(error) == {"type", "message"}
    return error


async def codes_of(site: Site, device_id: str) -> list[Json]:
    reply = await site.api.call("access_codes/list", device_id=device_id)
    assert reply["ok"] is True, reply
    codes: list[Json] = reply["access_codes"]
    return codes


#: A refusal to expect: the request's parameters, the error type, a field its message names.
Refusal = tuple[dict[str, Any], str, str]


async def misjudged(site: Site, endpoint: str, cases: list[Refusal], **fixed: Any) -> list[Any]:
    """The ``cases`` that ``endpoint`` (called with ``fixed`` too) did not refuse as expected,
    each with the reply it gave."""
    wrong = []
    for params, error_type, field in cases:
        reply = await site.api.call(endpoint, **fixed, **params)
        if (
            reply["ok"]
            or reply["error"]["type"] != error_type
            or (field not in reply["error"]["message"])
        ):
            wrong.append((params, reply))
    return wrong
