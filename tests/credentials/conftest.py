"""Fixtures for upstream-credential tests: a log capture for canaries."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.credentials.credentials_helpers import LogCapture


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    handler = LogCapture()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
