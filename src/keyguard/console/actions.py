"""The console's actions (``POST``, behind the guard's origin, CSRF and role checks): each is
one call of the admin service, so it is recorded with the signed-in actor like the API's.

A key's suspension, resumption, revocation and rotation first show a confirmation page (a
``GET`` that changes nothing), whose form makes the change. A new key's secret, and a rotated
key's, is rendered once, in the answer to the ``POST`` that made it (``Cache-Control:
no-store``), and never again.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..admin.bodies import CreateKey, Explain, RotateKey, validate_body
from ..admin.service import key_json
from ..core.times import utc_seconds
from ..durations import parse_duration
from ..errors import BadRequest
from .app import Handler, View, redirect
from .pages import policy_page

__all__ = [
    "acknowledge",
    "change_key",
    "confirm",
    "create_key",
    "explain",
    "resolve",
    "verify_audit",
]

_WHAT = {
    "suspend": "Suspend this key: requests with it are refused until it is resumed.",
    "resume": "Resume this key: requests with it are served again.",
    "revoke": "Revoke this key for good: it can never be used again.",
    "rotate": "Give this key a new secret; the old one keeps working for the grace period.",
}


async def _form(v: View) -> dict[str, str]:
    """The form's text fields (the CSRF token left out), each cut to 1,000 characters."""
    raw = await v.request.post()
    return {k: val[:1000] for k, val in raw.items() if isinstance(val, str) and k != "csrf"}


def _duration(value: str, name: str) -> Any:
    if not value:
        return None
    try:
        return parse_duration(value, allow_zero=name == "grace")
    except ValueError as exc:
        raise BadRequest(f"'{name}': {exc}", reason="invalid_body") from None


async def create_key(v: View) -> web.Response:
    form = await _form(v)
    body = validate_body(
        CreateKey,
        {
            "app": form.get("app", "").strip(),
            "expires": form.get("expires", "").strip() or None,
            "description": form.get("description", ""),
        },
    )
    record, secret = await v.service.create_key(
        v.actor,
        body.app,
        expires_in=_duration(body.expires or "", "expires"),
        description=body.description,
    )
    return v.page(
        "secret.html",
        title="Key created",
        key=key_json(record, record.created_at),
        secret=secret,
        previous_valid_until=None,
    )


def confirm(change: str) -> Handler:
    async def page(v: View) -> web.Response:
        record = await v.service.get_key(v.actor, v.request.match_info["key_id"])
        return v.page(
            "confirm.html",
            change=change,
            what=_WHAT[change],
            key=key_json(record, v.service.now()),
        )

    return page


def change_key(change: str) -> Handler:
    async def act(v: View) -> web.Response:
        key_id = v.request.match_info["key_id"]
        form = await _form(v)
        if change != "rotate":
            record = await v.service.change_key(v.actor, key_id, change)
            return redirect(f"/keys/{record.key_id}")
        body = validate_body(RotateKey, {"grace": form.get("grace", "").strip() or None})
        result = await v.service.rotate_key(
            v.actor, key_id, grace=_duration(body.grace or "", "grace")
        )
        return v.page(
            "secret.html",
            title="Key rotated",
            key=key_json(result.record, v.service.now()),
            secret=result.key,
            previous_valid_until=utc_seconds(result.record.previous_valid_until),
        )

    return act


async def resolve(v: View) -> web.Response:
    await v.service.resolve_incident(v.actor, v.request.match_info["incident_id"])
    return redirect("/incidents")


async def acknowledge(v: View) -> web.Response:
    await v.service.acknowledge_incident(v.actor, v.request.match_info["incident_id"])
    return redirect("/incidents")


async def verify_audit(v: View) -> web.Response:
    await v.service.verify_audit(v.actor)
    return redirect("/audit")


async def explain(v: View) -> web.Response:
    form = await _form(v)
    asked = {"principal": form.get("principal", "").strip(), "request": form.get("request", "")}
    body = validate_body(Explain, {"principal": asked["principal"], "request": asked["request"]})
    explained = await v.service.explain(v.actor, body.principal, body.request)
    return await policy_page(v, explained, asked)
