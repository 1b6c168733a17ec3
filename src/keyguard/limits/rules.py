"""From the configured rules to the lines of one request (compiled once, cached per caller).

For each scope the most specific rule applies: a rule naming the key id, app, team or
deployment, else the scope's unnamed rule. An app in several teams is held to every team's
rule. Each applicable limit becomes a :class:`Template` (a counter without its window). At
request time :meth:`Rules.plan` answers the caller's :class:`~.model.Plan`: its lines in the current
windows, built when a window turns and shared by every request until the next turn, and how
to compute one request's amounts (and its corrections at settlement) from its tokens and cost.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from .model import Kind, Line, Plan, plan_of
from .prices import to_micro
from .settings import BudgetRule, LimitRule, LimitSettings, Scope
from .windows import Period, WindowCache

__all__ = ["Subject", "Template", "Rules"]

_MAX_CACHED = 65_536
# valid from, valid until, the plans by (tokens > 0) + 2 * (cost > 0)
_Prepared = tuple[float, float, tuple[Plan | None, ...]]

# rule field -> (kind, period, short name used in counter keys, words for people)
_FIELDS: dict[str, tuple[Kind, Period | None, str, str]] = {
    "tpm": ("tokens", "minute", "tpm", "tokens per minute"),
    "rpm": ("requests", "minute", "rpm", "requests per minute"),
    "concurrent": ("concurrent", None, "conc", "concurrent requests"),
    "tokens_per_hour": ("tokens", "hour", "tph", "tokens per hour"),
    "tokens_per_day": ("tokens", "day", "tpd", "tokens per day"),
    "tokens_per_month": ("tokens", "month", "tpmo", "tokens per month"),
}


class Subject(NamedTuple):  # a tuple: built for every request, a dictionary key
    key_id: str | None
    app: str | None
    deployment: str


@dataclass(frozen=True, slots=True)
class Template:
    base: str  # "app:billing-bot:tpm"
    kind: Kind
    period: Period | None
    limit: int
    soft: int
    label: str
    words: str = ""  # the label without whose it is: "tokens per minute"


def _escape(name: str) -> str:
    return name.replace("%", "%25").replace(":", "%3A")


def _who(scope: Scope, name: str) -> str:
    return "all requests" if scope == "global" else f"{scope} '{name}'"


class Rules:
    def __init__(self, settings: LimitSettings) -> None:
        self._named: dict[tuple[str, str], LimitRule] = {}
        self._unnamed: dict[str, LimitRule] = {}
        for rule in settings.rules:
            if rule.name is None:
                self._unnamed[rule.scope] = rule
            else:
                self._named[(rule.scope, rule.name)] = rule
        self._budgets: dict[tuple[str, str | None], BudgetRule] = {
            (b.scope, b.name): b for b in settings.budgets
        }
        self._teams: dict[str, list[str]] = {}
        for team, apps in settings.teams.items():
            for app in apps:
                self._teams.setdefault(app, []).append(team)
        self._cache: dict[Subject, tuple[Template, ...]] = {}
        self._prepared: dict[tuple[str | None, str | None, str], _Prepared] = {}
        self._windows = WindowCache()

    def _rule(self, scope: Scope, name: str) -> LimitRule | None:
        return self._named.get((scope, name)) or self._unnamed.get(scope)

    def _entities(self, subject: Subject) -> Iterator[tuple[Scope, str]]:
        if subject.key_id is not None:
            yield "key", subject.key_id
        if subject.app is not None:
            yield "app", subject.app
            for team in self._teams.get(subject.app, ()):
                yield "team", team
        yield "deployment", subject.deployment
        yield "global", "*"

    def templates(self, subject: Subject) -> tuple[Template, ...]:
        cached = self._cache.get(subject)
        if cached is not None:
            return cached
        out: list[Template] = []
        for scope, name in self._entities(subject):
            out += self.entity_templates(scope, name)
        result = tuple(out)
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[subject] = result
        return result

    def entity_templates(self, scope: Scope, name: str) -> list[Template]:
        """The counters of one key id, app, team or deployment (``global``: name ``*``): its
        rule's limits, then its budgets (keys, apps and teams)."""
        prefix = f"{scope}:{_escape(name)}"
        out: list[Template] = []
        rule = self._rule(scope, name)
        if rule is not None:
            for field, (kind, period, short, words) in _FIELDS.items():
                limit = getattr(rule, field)
                if limit is not None:
                    label = f"{words} of {_who(scope, name)}"
                    out.append(Template(f"{prefix}:{short}", kind, period, limit, 0, label, words))
        if scope in ("key", "app", "team"):
            budget = self.budget(scope, name)
            if budget is not None:
                for period, amount in (("day", budget.per_day), ("month", budget.per_month)):
                    if amount is None:
                        continue
                    limit = to_micro(amount)
                    soft = max(1, int(limit * budget.soft_percent / 100))
                    words = f"budget per {period}"
                    label = f"{words} of {_who(scope, name)}"
                    short = "cost" + ("d" if period == "day" else "mo")
                    out.append(
                        Template(f"{prefix}:{short}", "cost", period, limit, soft, label, words)
                    )
        return out

    def budget(self, scope: Scope, name: str) -> BudgetRule | None:
        """The budget that applies to one key id, app or team (named, else unnamed)."""
        return self._budgets.get((scope, name)) or self._budgets.get((scope, None))

    def teams_of(self, app: str) -> tuple[str, ...]:
        """The teams ``app`` is in (its requests count against each team's limits)."""
        return tuple(self._teams.get(app, ()))

    def named(self) -> set[tuple[str, str]]:
        """Every (scope, name) a rule or a budget names."""
        found = {(scope, name) for scope, name in self._named}
        found |= {(scope, name) for scope, name in self._budgets if name is not None}
        return found

    @property
    def has_budgets(self) -> bool:
        return bool(self._budgets)

    def plan(
        self,
        key_id: str | None,
        app: str | None,
        deployment: str,
        tokens: int,
        cost: int,
        now: float,
    ) -> Plan | None:
        """The counters a request of ``tokens`` tokens and ``cost`` micro-units is charged to,
        in the windows containing ``now`` (``None``: no limit applies). A line whose amount
        would be zero is left out: nothing to charge, nothing to check."""
        # Stored under a Subject, found with a plain tuple: equal, and equally hashed.
        prepared = self._prepared.get((key_id, app, deployment))
        if prepared is None or not prepared[0] <= now < prepared[1]:
            prepared = self._prepare(Subject(key_id, app, deployment), now)
        return prepared[2][(tokens > 0) + 2 * (cost > 0)]

    def _prepare(self, subject: Subject, now: float) -> _Prepared:
        """The subject's plans with their window keys, valid while no window changes."""
        lines: list[Line] = []
        valid_from, valid_until = float("-inf"), float("inf")
        for t in self.templates(subject):
            if t.period is None:
                lines.append(Line(t.base, t.kind, t.limit, 0.0, t.soft, t.label))
                continue
            start, end = self._windows.get(t.period, now)
            valid_from, valid_until = max(valid_from, start), min(valid_until, end)
            lines.append(Line(f"{t.base}:{start}", t.kind, t.limit, float(end), t.soft, t.label))
        plans: list[Plan | None] = []
        shared: dict[tuple[Line, ...], Plan | None] = {}  # one plan for identical variants
        for has_cost in (False, True):
            for has_tokens in (False, True):
                kept = tuple(
                    ln
                    for ln in lines
                    if (ln.kind != "tokens" or has_tokens) and (ln.kind != "cost" or has_cost)
                )
                if kept not in shared:
                    shared[kept] = plan_of(kept)
                plans.append(shared[kept])
        prepared = (valid_from, valid_until, tuple(plans))
        if len(self._prepared) >= _MAX_CACHED:
            self._prepared.clear()
        self._prepared[subject] = prepared
        return prepared
