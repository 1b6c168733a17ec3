"""The base of every settings model: frozen once validated, unknown keys refused."""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict

from ..durations import parse_duration

__all__ = ["Frozen", "GUID", "Duration", "service_url", "is_loopback_host"]

# Tenant, group, client and object ids.
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _to_timedelta(value: Any) -> Any:
    if isinstance(value, str) and not value.startswith(("P", "-P")):  # ISO 8601: pydantic's
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return value


#: ``30d``, ``12h``, ``30m``, ``45s``, a number of seconds, or ISO 8601
Duration = Annotated[timedelta, BeforeValidator(_to_timedelta)]


def service_url(value: str, what: str, example: str, *, https_only: bool = False) -> str:
    """``value`` checked as the base URL of a service Keyguard calls (an upstream, Azure AI
    Content Safety, ARM, ...): http(s) (https only with ``https_only``) with a host, no query,
    fragment or user info; returned without its trailing slash. ``ValueError`` names ``what``
    and shows ``example``."""
    parts = urlsplit(value)
    schemes = ("https",) if https_only else ("https", "http")
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"{what} must be an https:// URL such as {example}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{what} must not carry a query, fragment or user info")
    return value.rstrip("/")


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a URL's host name) is this machine: ``localhost`` or a loopback IP."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
