"""``--fail-on`` conditions: ``<metric><op><number>``, parsed and tested against a report.

Metrics: ``failures`` (users whose task failed), ``coverage`` (percent covered), ``expiring``
(certificates expiring within the window), ``pending`` (users with an unfinished task),
``blocked`` (users whose deprovision the last pass blocked), ``drift`` (users whose credential
was changed outside syncd, not repaired yet).
Operators: ``>``, ``<``, ``>=``, ``<=``, ``==``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from syncd.errors import ConfigError

METRICS = ("failures", "coverage", "expiring", "pending", "blocked", "drift")
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    ">": operator.gt,
    "<": operator.lt,
}
_CONDITION = re.compile(r"^\s*([a-z]+)\s*(>=|<=|==|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class Condition:
    metric: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"


@dataclass(frozen=True)
class CheckResult:
    condition: Condition
    value: float
    holds: bool

    @property
    def reason(self) -> str:
        return f"{self.condition} holds: {self.condition.metric} is {self.value:g}"


def parse_condition(text: str) -> Condition:
    """``"coverage<99"`` -> Condition("coverage", "<", 99.0); ConfigError when malformed."""
    match = _CONDITION.match(text)
    if match is None:
        raise ConfigError(
            "--fail-on",
            f"{text!r} is not a condition; write METRIC OP NUMBER, for example failures>0 "
            "(operators > < >= <= ==)",
        )
    metric, op, number = match.groups()
    if metric not in METRICS:
        raise ConfigError(
            "--fail-on", f"unknown metric {metric!r}; use one of {', '.join(METRICS)}"
        )
    return Condition(metric, op, float(number))


def evaluate(conditions: Sequence[Condition], metrics: Mapping[str, float]) -> list[CheckResult]:
    return [
        CheckResult(c, metrics[c.metric], _OPERATORS[c.op](metrics[c.metric], c.threshold))
        for c in conditions
    ]
