"""The shared ``postgres_url`` fixture skips when PostgreSQL is down, but fails under CI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CONFTEST = Path(__file__).parent.parent / "conftest.py"
ISOLATED = ("-p", "no:cacheprovider", "-p", "no:asyncio")


@pytest.fixture
def unreachable(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    # the shared conftest alone, without its plugins (pytester itself is running this test)
    text = re.sub(r"^pytest_plugins = .*\n", "", CONFTEST.read_text(), flags=re.MULTILINE)
    pytester.makeconftest(text)
    pytester.makepyfile("def test_needs_postgres(postgres_url):\n    pass\n")
    monkeypatch.setenv("KEYGUARD_TEST_POSTGRES_URL", "postgresql://kg:hunter2@127.0.0.1:1/test")
    return pytester


def test_skips_when_unreachable(
    unreachable: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    result = unreachable.runpytest("-rs", *ISOLATED)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        ["*PostgreSQL at postgresql://kg:***@127.0.0.1:1/test is unreachable*"]
    )
    assert "hunter2" not in result.stdout.str()


def test_fails_when_unreachable_under_ci(
    unreachable: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = unreachable.runpytest(*ISOLATED)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*CI=true: PostgreSQL tests may not skip*"])
