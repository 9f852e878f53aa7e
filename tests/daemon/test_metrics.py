"""The Prometheus endpoint of ``syncd run``, scraped over HTTP."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from syncd.directory.base import DirectoryUser, Snapshot
from syncd.plan import CredentialView, Policy, UserView, plan
from syncd.service.metrics import Metrics

from .conftest import Deployment, RunningDaemon, finished_passes


def _scrape(listen: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        samples.setdefault(f"# {family.name}", [])
    return samples


def _value(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    return sum(v for found, v in samples.get(name, []) if labels.items() <= found.items())


def test_metrics_endpoint_serves_pass_step_user_error_and_expiry_metrics(
    daemon_deployment: Deployment, start_daemon: Callable[..., RunningDaemon]
) -> None:
    deploy = daemon_deployment
    url = deploy.config.state.url
    listen = str(deploy.config.metrics.listen)
    # Certificates are valid 365 days: a 400-day window counts every one as expiring soon.
    # No retry within a step: an injected 503 fails the step, and the metrics count it.
    deploy.update_config(report={"expiring_days": 400}, pipeline={"step_retries": 0})
    deploy.admin("POST", "faults", {"error_503": 0.5, "seed": 11})
    daemon = start_daemon()
    daemon.wait_until(lambda: finished_passes(url), "a first pass")
    deploy.admin("POST", "faults", {})

    def settled() -> dict[str, list[tuple[dict[str, str], float]]] | None:
        samples = _scrape(listen)
        active = _value(samples, "syncd_users", state="active")
        return samples if active == 6 and _value(samples, "syncd_passes_total") >= 2 else None

    samples = daemon.wait_until(settled, "six active users and two passes in the metrics")
    assert _value(samples, "syncd_certificates_expiring_soon") == 6
    assert _value(samples, "syncd_certificates_expiring_window_days") == 400
    assert _value(samples, "syncd_passes_total") >= 2
    assert _value(samples, "syncd_pass_duration_seconds_count") >= 2
    assert _value(samples, "syncd_last_pass_end_timestamp_seconds") > 0
    assert _value(samples, "syncd_up") == 1
    for step in ("create_key", "issue_certificate", "upload_keypair", "insert_identity"):
        count = _value(samples, "syncd_step_duration_seconds_count", step=step, result="ok")
        assert count >= 6, step
    assert _value(samples, "syncd_google_errors_total", kind="UNAVAILABLE") >= 1
    assert _value(samples, "syncd_tasks_total", kind="provision", result="ok") == 6
    # The first pass planned six provisions of users new in scope (reason code new_in_scope).
    assert _value(samples, "syncd_actions_total", kind="provision", code="new_in_scope") == 6
    assert "# syncd_kms_errors" in samples
    assert daemon.stop() == 0


def test_plan_decisions_are_counted_by_kind_and_reason_code() -> None:
    """One plan: two users new in scope, one missing within the grace period (held), three
    gone whose deprovision policy.max_deprovision blocks; the exposition text counts each by
    its reason code."""
    now = datetime.now(UTC)
    listed = (DirectoryUser("new1@x.com", "n1"), DirectoryUser("new2@x.com", "n2"),
              DirectoryUser("keep@x.com", "k"))  # fmt: skip
    active = CredentialView(1, now + timedelta(days=300))
    views = [UserView("keep@x.com", "k", True, active, holds_credentials=True)]
    views.append(UserView("away@x.com", "a", True, active, holds_credentials=True,
                          missing_since=now))  # fmt: skip
    views += [UserView(f"gone{i}@x.com", f"g{i}", True, active, holds_credentials=True,
                       missing_since=now - timedelta(days=1)) for i in range(3)]  # fmt: skip
    policy = Policy(timedelta(days=30), "1", deprovision_after=timedelta(hours=1))
    metrics = Metrics()
    metrics.observe_plan(plan(Snapshot("static", now, listed), views, policy, now))
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert samples[("syncd_actions_total", (("code", "new_in_scope"), ("kind", "provision")))] == 2
    assert samples[("syncd_holds_total", (("code", "missing_grace_period"),))] == 1
    assert samples[("syncd_holds_total", (("code", "mass_deprovision_blocked"),))] == 3
    assert not [key for key in samples if key[0] == "syncd_actions_total" and "deprovision"
                in dict(key[1]).values()]  # fmt: skip
