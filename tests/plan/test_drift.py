"""The rotating verification slice (syncd.plan.drift): every active credential verified at
least once per ``policy.verify_every``, at the rate the time between passes calls for, never
in a burst; and the plan's verify actions it leads to."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from syncd.directory.base import DirectoryUser, Snapshot
from syncd.domain import ActionKind, ReasonCode, TaskKind, TaskStatus
from syncd.plan import CredentialView, Policy, TaskView, UserView, plan
from syncd.plan.drift import slice_size, verification_slice

T0 = datetime(2026, 11, 2, 9, 17, tzinfo=UTC)
WEEK = timedelta(days=7)
POLICY = Policy(renew_before=timedelta(days=30), max_deprovision="100%", verify_every=WEEK)


def users(count: int, issued: datetime = T0) -> list[UserView]:
    return [
        UserView(
            f"u{i:04d}@x.com",
            f"id-{i}",
            True,
            CredentialView(1, issued + timedelta(days=365), not_before=issued),
            holds_credentials=True,
        )
        for i in range(count)
    ]


def verified(view: UserView, at: datetime) -> UserView:
    assert view.active is not None
    return replace(view, active=replace(view.active, verified_at=at))


def run_passes(
    views: list[UserView], times: list[datetime]
) -> tuple[dict[str, list[datetime]], list[int]]:
    """Passes at ``times`` (the first has no previous pass), each verifying its slice."""
    seen: dict[str, list[datetime]] = {v.email: [] for v in views}
    sizes = []
    last: datetime | None = None
    for now in times:
        chosen = verification_slice(views, POLICY, now, last)
        sizes.append(len(chosen))
        views = [verified(v, now) if v.email in chosen else v for v in views]
        for email in chosen:
            seen[email].append(now)
        last = now
    return seen, sizes


def longest_gap(issued: datetime, times: list[datetime]) -> timedelta:
    points = [issued, *times]
    return max(b - a for a, b in itertools.pairwise(points))


@pytest.mark.parametrize(
    "interval", [timedelta(minutes=15), timedelta(hours=1), timedelta(hours=5)]
)
def test_regular_passes_verify_everyone_within_verify_every_without_a_burst(
    interval: timedelta,
) -> None:
    count = 300
    passes = int(3 * WEEK / interval)
    times = [T0 + timedelta(minutes=1) + k * interval for k in range(passes)]
    seen, sizes = run_passes(users(count), times)

    # Rotation: nobody waits longer than verify_every from issue or from the last verification
    # (passes come at their own times: one pass interval later at most).
    for email, when in seen.items():
        assert when, f"{email} never verified"
        assert longest_gap(T0, when) < WEEK + interval, email
    # No burst: a pass verifies count x interval / verify_every users, rounded up at most.
    per_pass = count * (interval / WEEK)
    assert max(sizes[1:]) <= math.ceil(per_pass)
    assert sizes[0] == 0  # the first pass knows no interval, and nobody is overdue yet
    # ... and no more than the rate: three weeks verify everyone about three times.
    assert sum(sizes) <= 3 * count + math.ceil(per_pass)


def test_irregular_passes_keep_the_rate() -> None:
    rng = random.Random(15)
    count = 120
    times, now = [], T0 + timedelta(minutes=1)
    while now < T0 + 4 * WEEK:
        times.append(now)
        now += timedelta(minutes=rng.uniform(1, 240))
    seen, sizes = run_passes(users(count), times)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for email, when in seen.items():
        assert longest_gap(T0, when) < WEEK + max(gaps), email
    for size, gap in zip(sizes[1:], gaps, strict=True):
        assert size <= math.ceil(count * (gap / WEEK)) + 1
    assert sum(sizes) <= 4 * count + 2


def test_frequent_passes_over_few_users_verify_nobody_most_of_the_time() -> None:
    """Six users, a pass a minute: about six verifications a week, not one every pass."""
    times = [T0 + timedelta(minutes=1 + k) for k in range(60 * 24 * 7)]
    seen, sizes = run_passes(users(6), times)
    assert sum(sizes) <= 7
    assert sum(1 for size in sizes if size) == sum(sizes)  # one at a time
    assert all(len(when) >= 1 for when in seen.values())


def test_the_least_recently_verified_come_first() -> None:
    views = users(10)
    views = [verified(v, T0 + timedelta(days=i)) for i, v in enumerate(views)]
    views[7] = users(1, issued=T0 - timedelta(days=1))[0]  # never verified, issued before
    views[7] = replace(views[7], email="u0007@x.com")
    now = T0 + timedelta(days=6, hours=12)
    chosen = verification_slice(views, POLICY, now, now - 3 * WEEK / 10)
    assert chosen == {"u0007@x.com", "u0000@x.com", "u0001@x.com"}


def test_overdue_credentials_are_verified_whatever_the_slice() -> None:
    views = users(4)
    views[2] = verified(views[2], T0 - WEEK)
    now = T0 + timedelta(hours=1)
    assert verification_slice(views, POLICY, now, None) == {"u0002@x.com"}
    assert verification_slice(views, POLICY, now, now - timedelta(seconds=1)) == {"u0002@x.com"}


def test_only_settled_active_credentials_in_scope_are_candidates() -> None:
    overdue = T0 - 2 * WEEK
    base = users(6, issued=overdue)
    task = TaskView(TaskKind.RENEW, TaskStatus.PENDING, "create_key", 0, None, None)
    assert base[1].active is not None
    views = [
        base[0],
        replace(base[1], active=replace(base[1].active, drift=ReasonCode.DRIFT_KEYPAIR_DISABLED)),
        replace(base[2], open_task=task),
        replace(base[3], in_scope=False),
        replace(base[4], active=None),
        base[5],
    ]
    now = T0
    assert verification_slice(views, POLICY, now, now - WEEK) == {"u0000@x.com", "u0005@x.com"}


def test_slice_size_bounds() -> None:
    assert slice_size(10, WEEK, T0, None) == 0
    assert slice_size(0, WEEK, T0, T0 - WEEK) == 0
    assert slice_size(10, WEEK, T0, T0 - WEEK) == 10
    assert slice_size(10, WEEK, T0, T0 - 5 * WEEK) == 10
    assert slice_size(10, WEEK, T0, T0 + timedelta(hours=1)) == 0  # a clock that went back
    half = slice_size(10, WEEK, T0, T0 - WEEK / 2)
    assert half in (5, 6)


def test_the_plan_verifies_the_slice_with_its_reason() -> None:
    views = users(3)
    views[1] = verified(views[1], T0 - timedelta(days=8))
    snapshot = Snapshot("static", T0, tuple(DirectoryUser(v.email, v.directory_id) for v in views))
    result = plan(snapshot, views, POLICY, T0, None)
    (action,) = result.actions
    assert (action.email, action.kind, action.task_kind, action.code) == (
        "u0001@x.com",
        ActionKind.VERIFY,
        TaskKind.VERIFY,
        ReasonCode.VERIFY_DUE,
    )
    assert action.reason == "verification due (last verified 2026-10-25)"
    assert plan(snapshot, views, POLICY, T0 + 2 * WEEK, T0).counts() == {"verify": 3}
