"""The content-safety stage's decisions with a stand-in checker: which texts go where, which
action applies, Azure's filter result, and the fail-open note's bound."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from keyguard.core.operations import Route
from keyguard.core.request import RequestContext
from keyguard.errors import BadRequest, ContentFiltered, GuardUnavailable, UpstreamError
from keyguard.events import EventBus, SecurityEvent
from keyguard.guard import extract
from keyguard.guard.content_safety_settings import ContentSafetySettings
from keyguard.guard.findings import ModelVerdict, Slot
from keyguard.policy.guardrails import DEFAULTS, Effective, GuardActions
from keyguard.proxy.content_safety import SafetyStage, filter_result, texts
from keyguard.proxy.routes import parse_route


class Checker:
    def __init__(self, answer: ModelVerdict | Exception) -> None:
        self.answer = answer
        self.calls: list[tuple[list[str], list[str], bool, bool]] = []

    async def check(
        self,
        prompts: Sequence[str],
        documents: Sequence[str],
        *,
        shields: bool = True,
        analyses: bool = True,
    ) -> ModelVerdict:
        self.calls.append((list(prompts), list(documents), shields, analyses))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def roles(*specs: dict[str, Any]) -> Effective:
    """The guardrails of the roles allowing a request, as the policy combines them."""
    return Effective([GuardActions.model_validate(spec) for spec in specs])


def _settings(**changes: Any) -> ContentSafetySettings:
    return ContentSafetySettings.model_validate(
        {
            "endpoint": "https://cs.example.com",
            "credential": {"managed_identity": {}},
            "harm": {"Hate": 4},
            **changes,
        }
    )


def _ctx(text: str = "hello") -> RequestContext:
    ctx = RequestContext("r1", 0.0, "POST", "203.0.113.9", None)
    route: Route = parse_route(
        "POST", "/openai/deployments/gpt-4o/chat/completions", "api-version=2024-10-21"
    )
    ctx.route = route
    ctx.payload = {"messages": [{"role": "user", "content": text}]}
    return ctx


@pytest.fixture(autouse=True)
def _extraction(monkeypatch: pytest.MonkeyPatch) -> None:
    def slots(operation: str, body: Any) -> list[Slot]:
        messages = body.get("messages", [])
        return [Slot(("messages", i), m["role"], m["content"]) for i, m in enumerate(messages)]

    monkeypatch.setattr(extract, "request_slots", slots)


def _stage(
    answer: ModelVerdict | Exception, clock: Clock | None = None, **kwargs: Any
) -> tuple[SafetyStage, Checker, list[SecurityEvent]]:
    checker = Checker(answer)
    events = EventBus()
    seen: list[SecurityEvent] = []
    events.subscribe(lambda e: seen.append(e) if isinstance(e, SecurityEvent) else None)
    settings = _settings(**kwargs.pop("settings", {}))
    stage = SafetyStage(checker, settings, events, clock=clock or Clock(), **kwargs)
    return stage, checker, seen


def test_texts_by_role() -> None:
    slots = [
        Slot(("a",), "system", "s"),
        Slot(("b",), "user", "u"),
        Slot(("c",), "assistant", "a"),
        Slot(("d",), "tool_call", "{}"),
        Slot(("e",), "tool", "t"),
        Slot(("f",), "input", "i"),
        Slot(("g",), "developer", "d"),
    ]
    assert texts(slots) == (["s", "u", "i", "d"], ["t"])


@pytest.mark.parametrize(
    ("verdict", "result"),
    [
        (ModelVerdict(True, "jailbreak"), {"jailbreak": {"filtered": True, "detected": True}}),
        (
            ModelVerdict(True, "indirect_attack"),
            {"indirect_attack": {"filtered": True, "detected": True}},
        ),
        (ModelVerdict(True, "hate", 4), {"hate": {"filtered": True, "severity": "medium"}}),
        (ModelVerdict(True, "self_harm", 7), {"self_harm": {"filtered": True, "severity": "high"}}),
        (ModelVerdict(True, "sexual", 2), {"sexual": {"filtered": True, "severity": "low"}}),
        (
            ModelVerdict(True, "blocklist:x"),
            {"custom_blocklists": {"filtered": True, "details": [{"filtered": True, "id": "x"}]}},
        ),
    ],
)
def test_azure_filter_results(verdict: ModelVerdict, result: dict[str, Any]) -> None:
    assert filter_result(verdict) == result


async def test_block_is_azure_s_content_filter() -> None:
    stage, checker, _ = _stage(ModelVerdict(True, "jailbreak"))
    ctx = _ctx()
    check = stage.start(ctx)
    assert check is not None
    with pytest.raises(ContentFiltered) as refused:
        await check.settle()
    assert refused.value.status == 400 and refused.value.code == "content_filter"
    assert refused.value.reason == "content_filter:jailbreak"
    assert checker.calls == [(["hello"], [], True, True)]
    await check.settle()  # once only


async def test_the_role_s_actions_decide() -> None:
    verdict = ModelVerdict(True, "hate", 6)
    stage, checker, seen = _stage(
        verdict, actions_of=lambda ctx: roles({"attack": "off", "harm": "alert"})
    )
    check = stage.start(_ctx())
    assert check is not None
    await check.settle()  # served
    assert [e.kind for e in seen] == ["content_safety_flagged"]
    assert checker.calls[0][2:] == (False, True)  # attack off: no Prompt Shields asked
    stage, checker, seen = _stage(
        verdict, actions_of=lambda ctx: roles({"attack": "off", "harm": "log"})
    )
    check = stage.start(_ctx())
    assert check is not None
    await check.settle()
    assert seen == []
    stage, checker, _ = _stage(
        verdict,
        actions_of=lambda ctx: roles(
            {"attack": "off", "harm": "off", "categories": {"hate": "redact"}}
        ),
    )
    check = stage.start(_ctx())
    assert check is not None
    with pytest.raises(ContentFiltered):  # redact means block for a verdict
        await check.settle()
    stage, checker, _ = _stage(
        verdict, actions_of=lambda ctx: roles({"attack": "off", "harm": "off"})
    )
    assert stage.start(_ctx()) is None and checker.calls == []


async def test_a_role_that_names_no_action_gets_the_section_s_and_the_strictest_role_wins() -> None:
    verdict = ModelVerdict(True, "hate", 6)
    for effective in (DEFAULTS, roles({"secret": "block"}), roles({}, {"harm": "log"})):
        stage, checker, _ = _stage(verdict, actions_of=lambda ctx, e=effective: e)
        check = stage.start(_ctx())
        assert check is not None
        with pytest.raises(ContentFiltered):  # the section's on_harm: block
            await check.settle()
        assert checker.calls[0][2:] == (True, True)
    lenient = {"on_harm": "log", "on_attack": "off"}
    stage, checker, seen = _stage(
        verdict,
        actions_of=lambda ctx: roles({"harm": "alert"}, {"personal": "redact"}),
        settings=lenient,
    )
    check = stage.start(_ctx())
    assert check is not None
    await check.settle()  # alert (the first role) is stricter than the section's log
    assert checker.calls[0][2:] == (False, True)
    assert [e.kind for e in seen] == ["content_safety_flagged"]
    stage, checker, _ = _stage(
        verdict, actions_of=lambda ctx: roles({"harm": "off"}), settings=lenient
    )
    assert stage.start(_ctx()) is None and checker.calls == []  # the role turns harm off


async def test_nothing_to_check() -> None:
    stage, checker, _ = _stage(ModelVerdict(False))
    ctx = _ctx()
    ctx.payload = {"messages": []}
    assert stage.start(ctx) is None
    ctx.payload = None
    assert stage.start(ctx) is None
    assert checker.calls == []


async def test_fail_closed_is_a_503() -> None:
    stage, _, seen = _stage(GuardUnavailable("content safety answered 500"))
    check = stage.start(_ctx())
    assert check is not None
    with pytest.raises(UpstreamError) as refused:
        await check.settle()
    assert refused.value.status == 503 and seen == []


async def test_fail_open_notes_at_most_once_a_second() -> None:
    clock = Clock()
    stage, _, seen = _stage(GuardUnavailable("down"), clock=clock, settings={"on_error": "allow"})
    for _ in range(5):
        ctx = _ctx()
        check = stage.start(ctx)
        assert check is not None
        await check.settle()
        assert ctx.reason == "content_safety_unchecked"
    clock.now += 1.5
    check = stage.start(_ctx())
    assert check is not None
    await check.settle()
    assert [e.evidence["requests"] for e in seen] == [1, 5]


async def test_a_bug_in_the_checker_is_the_declared_choice_not_a_500() -> None:
    stage, _, _ = _stage(RuntimeError("bug"))
    check = stage.start(_ctx())
    assert check is not None
    with pytest.raises(UpstreamError):
        await check.settle()
    stage, _, _ = _stage(BadRequest("too long"))
    check = stage.start(_ctx())
    assert check is not None
    with pytest.raises(BadRequest):
        await check.settle()


async def test_cancel_retrieves_or_stops_the_check() -> None:
    stage, _, _ = _stage(GuardUnavailable("down"))
    check = stage.start(_ctx())
    assert check is not None
    check.cancel()  # still running: cancelled
    check = stage.start(_ctx())
    assert check is not None
    with pytest.raises(UpstreamError):
        await check.settle()
    check.cancel()
