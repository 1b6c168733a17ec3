"""Which HTTP server the tests' gateways run the proxy port on, and what a test that needs
aiohttp's server says when they run on Granian.

``KEYGUARD_TEST_HTTP_SERVER=granian`` (:data:`tests.support.settings.HTTP_SERVER_ENV`) starts
every gateway of the suite with ``proxy.http_server: granian``. A test of something Granian's
server does not do is marked :func:`lacks_on_granian`: a strict expected failure there (it
must fail, so a Granian that gains the feature is noticed), an ordinary test otherwise.
docs/performance.md ("Keyguard on Granian") lists the same gaps.
"""

from __future__ import annotations

import os

import pytest

from tests.support.settings import HTTP_SERVER_ENV

__all__ = ["ON_GRANIAN", "lacks_on_granian"]

ON_GRANIAN = os.environ.get(HTTP_SERVER_ENV) == "granian"


def lacks_on_granian(reason: str) -> pytest.MarkDecorator:
    """Expected to fail when the proxy port runs on Granian, because of ``reason``."""
    return pytest.mark.xfail(ON_GRANIAN, reason=f"on Granian: {reason}", strict=True)
