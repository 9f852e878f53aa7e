"""Several syncd instances sharing one PostgreSQL state store (``state.shared``, issue 16).

Real parts throughout: PostgreSQL, the Gmail sandbox over HTTP, the embedded KMS in the shared
store, and ``syncd run`` as real processes. The claim queries are tested on PostgreSQL with
transactions held open at once, as instances on different hosts would.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from syncd.config import load_config
from syncd.domain import KeyPairStatus, TaskKind, TaskStatus
from syncd.errors import ClaimLostError
from syncd.google.ratelimit import RateLimiter
from syncd.pipeline import tasks
from syncd.pipeline.claims import Claim
from syncd.pipeline.steps import Outcome
from syncd.state import instances
from syncd.state.db import Database
from syncd.state.instances import Membership
from syncd.state.lock import pid_namespace
from syncd.state.models import (
    AuditEvent,
    Instance,
    Issuer,
    KeyPair,
    KmsKey,
    Run,
    Task,
    User,
)
from tests.conftest import admin_connection
from tests.support.testca import TestHierarchy

from ..daemon.conftest import NotifySocket, RunningDaemon, free_port, wait_until
from .conftest import (
    Deployment,
    build_deployment,
    gmail_state,
    import_pipeline_issuer,
    sandbox_users,
)

USERS = 24


def _claim(token: int) -> Claim:
    return Claim(token, timedelta(seconds=30), fenced=False)


def _seed_pending(database: Database, count: int) -> list[int]:
    """``count`` users with a pending verification task each (as a plan enqueues them)."""
    now = datetime.now(UTC)
    ids = []
    with database.transaction() as session:
        for number in range(count):
            user = User(
                email=f"seed{number}@example.com",
                directory_id=f"seed{number}",
                source="static",
                first_seen=now,
                last_seen=now,
            )
            session.add(user)
            session.flush()
            task = Task(
                user_id=user.id,
                kind=TaskKind.VERIFY,
                status=TaskStatus.PENDING,
                next_step="verify_credential",
                created_at=now,
            )
            session.add(task)
            session.flush()
            ids.append(task.id)
    return ids


def test_instances_claiming_at_once_each_get_a_different_task(pg_url: str) -> None:
    database = Database.open(pg_url)
    try:
        ids = _seed_pending(database, 3)
        now = datetime.now(UTC)
        first = database.engine.connect()
        second = database.engine.connect()
        try:
            with first.begin(), second.begin():
                # Both transactions are open at once: the first's row lock is skipped.
                a = tasks.claim_next(first, None, _claim(2_000_000_001), now)
                b = tasks.claim_next(second, None, _claim(2_000_000_002), now)
                assert a is not None and b is not None
                assert a[0].task_id != b[0].task_id
                assert {a[0].task_id, b[0].task_id} <= set(ids)
        finally:
            first.close()
            second.close()
        with database.engine.begin() as connection:
            c = tasks.claim_next(connection, None, _claim(2_000_000_003), now)
            assert c is not None and c[0].task_id not in (a[0].task_id, b[0].task_id)
            # Every task is now claimed under a live lease: none is free.
            assert tasks.claim_next(connection, None, _claim(2_000_000_003), now) is None
            assert not tasks.claimable(connection, now)
    finally:
        database.close()


def test_a_claim_whose_lease_ended_is_taken_over_and_the_old_holder_records_nothing(
    pg_url: str,
) -> None:
    database = Database.open(pg_url)
    try:
        (task_id,) = _seed_pending(database, 1)
        now = datetime.now(UTC)
        old, new = _claim(2_000_000_010), _claim(2_000_000_011)
        with database.engine.begin() as connection:
            claimed = tasks.claim_next(connection, None, old, now)
            assert claimed is not None
            work, step = claimed
        assert step == "verify_credential"
        # While the lease runs, nobody else may take it.
        with database.engine.begin() as connection:
            assert tasks.claim_next(connection, None, new, now + timedelta(seconds=29)) is None
        # Once it ended (the old holder killed or frozen), another instance takes it over.
        later = now + timedelta(seconds=31)
        with database.engine.begin() as connection:
            taken = tasks.claim_next(connection, None, new, later)
            assert taken is not None and taken[0].task_id == task_id
        # The old holder wakes up: its checkpoint changes nothing and says why.
        with database.engine.begin() as connection:
            with pytest.raises(ClaimLostError, match="taken over by another instance"):
                tasks.record_step(
                    connection, work, "verify_credential", Outcome(), later, None, old
                )
            with pytest.raises(ClaimLostError):
                tasks.renew(connection, task_id, old, later)
        with database.sessions() as session:
            task = session.get_one(Task, task_id)
            assert task.claimed_by == new.token
            assert task.next_step == "verify_credential"
    finally:
        database.close()


def test_a_worker_whose_claim_ended_and_was_claimed_again_by_its_own_instance_stops(
    pg_url: str,
) -> None:
    database = Database.open(pg_url)
    try:
        _seed_pending(database, 1)
        now = datetime.now(UTC)
        instance = _claim(2_000_000_020)  # every worker of an instance claims with its token
        with database.engine.begin() as connection:
            claimed = tasks.claim_next(connection, None, instance, now)
            assert claimed is not None
            slow, step = claimed
        later = now + timedelta(seconds=31)  # the slow worker's step outlived the lease
        with database.engine.begin() as connection:
            again = tasks.claim_next(connection, None, instance, later)
            assert again is not None and again[0].task_id == slow.task_id
            tasks.record_step(connection, again[0], step, Outcome(), later, None, instance)
        with (
            database.engine.begin() as connection,
            pytest.raises(ClaimLostError, match="another worker of this instance"),
        ):
            tasks.record_step(connection, slow, step, Outcome(), later, None, instance)
    finally:
        database.close()


def _member_elsewhere(database: Database, pid_namespace: str | None) -> int:
    """A member with this host's hostname, a pid no process here has, the given namespace and
    a live claim on the one seeded task; its token."""
    now = datetime.now(UTC)
    with database.engine.begin() as connection:
        token = connection.execute(
            insert(Instance)
            .values(
                host=Membership(database, 1).host,
                pid=2**22 + 12345,  # above the default pid_max: no such process here
                pid_namespace=pid_namespace,
                started_at=now,
                heartbeat_at=now,
                workers=2,
            )
            .returning(Instance.id)
        ).scalar_one()
        assert tasks.claim_next(connection, None, _claim(token), now) is not None
    return int(token)


def test_a_member_of_another_pid_namespace_is_not_taken_for_dead(pg_url: str) -> None:
    """Containers and cloned machines share hostnames, not pids: a member there is alive."""
    database = Database.open(pg_url)
    try:
        _seed_pending(database, 1)
        for namespace in ("another-boot-id:4026531836", None):
            token = _member_elsewhere(database, namespace)
            me = Membership(database, 2).join()
            try:
                me.heartbeat()
                with database.engine.connect() as connection:
                    assert not tasks.claimable(connection, datetime.now(UTC))
                    members = connection.execute(select(Instance.id)).scalars().all()
                    assert sorted(members) == sorted([token, me.token])
                    assert me.group_size() == 2
            finally:
                me.leave()
            with database.engine.begin() as connection:
                connection.execute(delete(Instance).where(Instance.id == token))
                connection.execute(update(Task).values(status=TaskStatus.PENDING, lease_until=None))
    finally:
        database.close()


def test_a_dead_member_on_this_host_is_removed_and_its_claims_released(pg_url: str) -> None:
    database = Database.open(pg_url)
    try:
        (task_id,) = _seed_pending(database, 1)
        now = datetime.now(UTC)
        with database.engine.begin() as connection:
            token = connection.execute(
                insert(Instance)
                .values(
                    host="another-hostname",  # what counts is the kernel and PID namespace
                    pid=2**22 + 12345,  # above the default pid_max: no such process
                    pid_namespace=pid_namespace(),
                    started_at=now,
                    heartbeat_at=now,
                    workers=2,
                )
                .returning(Instance.id)
            ).scalar_one()
            assert token >= 1_000_000_000  # instance tokens never meet run-lock tokens
            assert tasks.claim_next(connection, None, _claim(token), now) is not None
            assert not tasks.claimable(connection, now)
        me = Membership(database, 2).join()
        try:
            with database.engine.connect() as connection:
                assert tasks.claimable(connection, datetime.now(UTC))
                assert connection.execute(select(Instance.id)).scalars().all() == [me.token]
            assert me.group_size() == 1
        finally:
            me.leave()
        with database.engine.connect() as connection:
            assert connection.execute(select(Instance.id)).first() is None
            assert (
                connection.execute(select(Task.lease_until).where(Task.id == task_id)).scalar_one()
                is None
            )
    finally:
        database.close()


def test_a_heartbeat_that_comes_late_after_leaving_does_not_register_again(
    pg_url: str,
) -> None:
    """leave() waits for the heartbeat thread only so long: a beat held up by a slow database
    may run after the row was removed, and must not bring back a ghost member."""
    database = Database.open(pg_url)
    try:
        me = Membership(database, 1).join()
        me.leave()
        me.heartbeat()
        with database.engine.connect() as connection:
            assert connection.execute(select(Instance.id)).first() is None
    finally:
        database.close()


def test_leaving_waits_only_so_long_for_a_state_store_that_does_not_answer(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A stopping daemon must not hang until systemd kills it (a network cut, a hung host)."""
    database = Database.open(pg_url)
    answer = threading.Event()
    try:
        me = Membership(database, 1).join()
        monkeypatch.setattr(instances, "LEAVE_SECONDS", 0.5)

        def begin() -> None:  # as a connection through a network cut: no answer, then an error
            answer.wait(30)
            raise OperationalError("DELETE FROM instances", None, ConnectionError("timed out"))

        me.database = SimpleNamespace(engine=SimpleNamespace(begin=begin))  # type: ignore[assignment]
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="syncd.instances"):
            me.leave()
        assert time.monotonic() - started < 5
        assert "the state store did not answer" in caplog.text
    finally:
        answer.set()
        with database.engine.begin() as connection:
            connection.execute(delete(Instance))
        database.close()


def _limiter_on_a_fake_clock(burst: int, start: float) -> tuple[RateLimiter, list[float]]:
    """10 calls a second; its clock moves only by what it sleeps (the sleeps listed)."""
    clock = [start]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    return RateLimiter(10.0, burst=burst, clock=lambda: clock[0], sleep=sleep), slept


def test_the_google_rate_is_divided_among_the_live_members() -> None:
    limiter, slept = _limiter_on_a_fake_clock(burst=1, start=0.0)
    members = [3]
    limiter.divide_among(lambda: members[0])
    for _ in range(4):
        limiter.acquire()
    assert slept == pytest.approx([0.3, 0.3, 0.3])  # 10/s for the group: 3.33/s each
    members[0] = 1
    limiter.acquire()
    limiter.acquire()
    assert slept[-1] == pytest.approx(0.1)


def test_a_member_joining_a_live_group_waits_a_heartbeat_before_its_first_call() -> None:
    limiter, slept = _limiter_on_a_fake_clock(burst=10, start=100.0)
    # The others recount at their next heartbeat, 5 s from now: not one call before then,
    # not even the burst an idle limiter allows.
    limiter.divide_among(lambda: 2, lambda: 105.0)
    for _ in range(3):
        limiter.acquire()
    assert slept[0] == pytest.approx(5.0)
    assert 100.0 + sum(slept) >= 105.0  # the clock, moved only by the sleeps


def test_members_count_each_other_live_by_the_databases_clock(pg_url: str) -> None:
    """Hosts' clocks differ; a member 20 s behind is still live to the others (its rate share
    stays divided), and it counts them live too."""
    database = Database.open(pg_url)
    late = Membership(database, 1, clock=lambda: datetime.now(UTC) - timedelta(seconds=20))
    on_time = Membership(database, 1)
    try:
        late.join()
        on_time.join()
        late.heartbeat()
        on_time.heartbeat()
        assert (late.group_size(), on_time.group_size()) == (2, 2)
        assert on_time.share_from() > time.monotonic()  # it joined a live group
    finally:
        late.leave()
        on_time.leave()
        database.close()


def test_sqlite_cannot_be_shared(tmp_path: Path) -> None:
    config = tmp_path / "syncd.yaml"
    config.write_text(
        json.dumps({"state": {"url": f"sqlite:///{tmp_path / 'state.db'}", "shared": True}})
    )
    from syncd.errors import ConfigError

    with pytest.raises(
        ConfigError, match=r"state\.shared: a SQLite state store serves one syncd instance"
    ):
        load_config(config)


def _start(deploy: Deployment, tmp: Path, name: str, **env: str) -> RunningDaemon:
    notify = NotifySocket(Path(f"/tmp/syncd-shared-{name}-{free_port()}.sock"))
    return RunningDaemon(deploy, notify, env)


def _members(deploy: Deployment) -> set[str]:
    """The pids of the live instances, as `syncd status --instances` lists them."""
    listed = deploy.syncd("status", "--instances", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    return {m["instance"].rsplit(":", 1)[1] for m in json.loads(listed.stdout)["instances"]}


def _all_done(database: Database, count: int) -> bool:
    with database.sessions() as session:
        active = session.scalars(
            select(KeyPair.user_id).where(KeyPair.status == KeyPairStatus.ACTIVE)
        ).all()
        open_tasks = session.scalars(
            select(Task.id).where(
                Task.status.in_((TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.FAILED))
            )
        ).all()
    return len(set(active)) == count and not open_tasks


@pytest.mark.timeout(120)
def test_a_permanent_failure_is_logged_once_however_often_the_queue_is_polled(
    shared: Deployment, tmp_path: Path
) -> None:
    shared.set_users(sandbox_users(2))
    shared.update_config(pipeline={"workers": 2, "poll_interval": "1s"})
    daemon = _start(shared, tmp_path, "a")
    try:
        daemon.wait_until(lambda: "pass 1: ok" in daemon.log(), "the first pass")
        database = Database.open(shared.config.state.url)
        try:  # the issuing CA's key is gone from the KMS (for good), and a task waits
            with database.transaction() as session:
                session.execute(update(Issuer).values(kms_private_key_id="no-such-key"))
        finally:
            database.close()
        _add_pending_verification(shared)
        mark = len(daemon.log())
        daemon.wait_until(lambda: "pass failed" in daemon.log()[mark:], "the failure")
        time.sleep(5)  # about five more polls
        failures = [line for line in daemon.log()[mark:].splitlines() if "pass failed" in line]
        assert len(failures) == 1, failures
    finally:
        assert daemon.stop() == 0


def _add_pending_verification(deploy: Deployment) -> int:
    """A verification of the first provisioned user's active key pair, queued as another
    instance's plan enqueues it."""
    database = Database.open(deploy.config.state.url)
    try:
        with database.transaction() as session:
            active = session.scalars(
                select(KeyPair)
                .where(KeyPair.status == KeyPairStatus.ACTIVE)
                .order_by(KeyPair.user_id)
            ).first()
            assert active is not None
            task = Task(
                user_id=active.user_id,
                kind=TaskKind.VERIFY,
                status=TaskStatus.PENDING,
                next_step="verify_credential",
                key_pair_id=active.id,
                created_at=datetime.now(UTC),
            )
            session.add(task)
            session.flush()
            return task.id
    finally:
        database.close()


def _task_status(deploy: Deployment, task_id: int) -> TaskStatus:
    database = Database.open(deploy.config.state.url)
    try:
        with database.sessions() as session:
            return session.get_one(Task, task_id).status
    finally:
        database.close()


@pytest.mark.timeout(120)
def test_a_reload_takes_a_new_poll_interval(shared: Deployment, tmp_path: Path) -> None:
    shared.set_users(sandbox_users(1))
    shared.update_config(pipeline={"poll_interval": "1h"})
    daemon = _start(shared, tmp_path, "a")
    try:
        daemon.wait_until(lambda: "pass 1: ok" in daemon.log(), "the first pass")
        shared.update_config(pipeline={"poll_interval": "1s"})
        daemon.send(signal.SIGHUP)
        daemon.wait_until(lambda: "configuration reloaded" in daemon.log(), "the reload")
        task_id = _add_pending_verification(shared)
        daemon.wait_until(
            lambda: _task_status(shared, task_id) is TaskStatus.DONE,
            "the queued task worked at the new poll interval",
            30,
        )
    finally:
        assert daemon.stop() == 0


@pytest.mark.timeout(240)
def test_three_instances_share_a_pass_and_take_over_a_killed_ones_tasks(
    shared: Deployment, tmp_path: Path
) -> None:
    emails = sandbox_users(USERS)
    shared.set_users(emails)
    database = Database.open(shared.config.state.url)
    # The second instance kills itself (SIGKILL) the third time a key pair upload reached
    # Gmail, before recording it: mid-pass, with claims held and an effect unrecorded. It
    # starts first: an instance joining a live group makes no Google call for a heartbeat.
    killed = _start(shared, tmp_path, "b", SYNCD_CRASH_AT="after:upload_keypair:3")
    killed.wait_until(lambda: "joined the shared group" in killed.log(), "instance b to join")
    daemons = [_start(shared, tmp_path, "a"), killed, _start(shared, tmp_path, "c")]
    try:
        wait_until(lambda: killed.process.poll() is not None, "instance b to be killed", 120)
        assert killed.process.returncode == -signal.SIGKILL
        wait_until(
            lambda: _all_done(database, USERS),
            "every user provisioned",
            150,
            on_fail="\n".join(d.log()[-3000:] for d in daemons),
        )
        survivors = [daemons[0], daemons[2]]
        assert all(d.running() for d in survivors)
        with database.sessions() as session:
            runs = {run.id: run for run in session.scalars(select(Run))}
            done = session.scalars(select(Task).where(Task.status == TaskStatus.DONE)).all()
            # One pass was planned for the group, not one per instance.
            assert sum(1 for run in runs.values() if run.kind == "sync") == 1
            finishers = {runs[t.run_id].pid for t in done if t.run_id is not None}
            # Every instance did part of the work.
            assert finishers >= {d.process.pid for d in survivors}
            # The killed instance's tasks were finished by the survivors: its users' audit
            # trails start under its passes and end under a survivor's.
            killed_runs = {i for i, run in runs.items() if run.pid == killed.process.pid}
            steps_by: dict[int, set[int]] = {}
            for user_id, run_id in session.execute(
                select(AuditEvent.user_id, AuditEvent.run_id).where(
                    AuditEvent.run_id.is_not(None), AuditEvent.user_id.is_not(None)
                )
            ):
                steps_by.setdefault(user_id, set()).add(run_id)
            taken_over = [
                user_id
                for user_id, run_ids in steps_by.items()
                if run_ids & killed_runs and run_ids - killed_runs
            ]
            assert taken_over, "no task of the killed instance was finished by another"
            # Exactly one active key pair per user, and every user KMS key is in use.
            pairs = session.scalars(select(KeyPair)).all()
            kms_keys = session.scalars(
                select(KmsKey.id).where(KmsKey.label.like("syncd:user%"))
            ).all()
        assert sorted(p.user_id for p in pairs) == sorted(set(p.user_id for p in pairs))
        assert set(kms_keys) == {p.kms_private_key_id for p in pairs}
        # Gmail holds exactly one key pair and one identity per user, the recorded ones.
        recorded = {p.user_id: p.gmail_key_pair_id for p in pairs}
        with database.sessions() as session:
            ids = {
                email: user_id for email, user_id in session.execute(select(User.email, User.id))
            }
        for email in emails:
            keypairs, identity = gmail_state(shared, email)
            assert len(keypairs) == 1, email
            assert identity is not None
            assert identity["primaryKeyPairId"] == keypairs[0]["keyPairId"]
            assert keypairs[0]["keyPairId"] == recorded[ids[email]]
        # syncd status names the live instances.
        assert _members(shared) == {str(d.process.pid) for d in survivors}
    finally:
        for daemon in daemons:
            code = daemon.stop()
            daemon.notify.close()
            daemon.notify.path.unlink(missing_ok=True)
            if daemon is not daemons[1]:
                assert code == 0, daemon.log()[-3000:]
        database.close()
    # A clean stop leaves the group.
    with Database.open(shared.config.state.url).engine.connect() as connection:
        assert connection.execute(select(Instance.id)).first() is None


def test_a_second_syncd_run_on_sqlite_says_so(
    tmp_path: Path, pipeline_ca: TestHierarchy, _sqlite_migrated_template: Path
) -> None:
    from tests.conftest import _copy_sqlite

    _copy_sqlite(_sqlite_migrated_template, tmp_path / "state.db")
    deploy = build_deployment(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", pipeline_ca)
    try:
        import_pipeline_issuer(deploy, pipeline_ca)
        deploy.update_config(schedule={"interval": "1h", "jitter": "0.1s"})
        first = _start(deploy, tmp_path, "first")
        first.wait_for_notification("READY=1")
        second = _start(deploy, tmp_path, "second")
        code = second.process.wait(60)
        assert code == 3, second.log()
        assert "already serves the SQLite state store" in second.log()
        assert f"pid {first.process.pid}" in second.log()
        assert "use PostgreSQL (state.url) with state.shared: true" in second.log()
        assert first.running()
        assert first.stop() == 0
        for daemon in (first, second):
            daemon.notify.close()
            daemon.notify.path.unlink(missing_ok=True)
    finally:
        deploy.sandbox.stop()


def test_a_shared_resync_and_status_show_the_holder(shared: Deployment) -> None:
    shared.set_users(sandbox_users(3))
    synced = shared.syncd("sync", "--once")
    assert synced.returncode == 0, synced.stderr
    database = Database.open(shared.config.state.url)
    try:
        assert _all_done(database, 3)
        # A task another instance holds a live claim on is shown with its holder.
        now = datetime.now(UTC)
        with database.engine.begin() as connection:
            token = connection.execute(
                insert(Instance)
                .values(host="other-host", pid=4242, started_at=now, heartbeat_at=now, workers=2)
                .returning(Instance.id)
            ).scalar_one()
            user_id = connection.execute(
                select(User.id).where(User.email == sandbox_users(3)[0])
            ).scalar_one()
            connection.execute(
                insert(Task).values(
                    user_id=user_id,
                    kind=TaskKind.VERIFY,
                    status=TaskStatus.RUNNING,
                    reason="test",
                    next_step="verify",
                    attempts=0,
                    permanent=False,
                    created_at=now,
                    updated_at=now,
                    claimed_by=token,
                    lease_until=now + timedelta(minutes=5),
                )
            )
        status = shared.syncd("status", "--format", "json")
        assert status.returncode == 0, status.stderr
        held = {u["email"]: u["held_by"] for u in json.loads(status.stdout)["users"]}
        assert held[sandbox_users(3)[0]] == "other-host:4242"
        # A resync leaves the claimed user alone and works the others.
        resynced = shared.syncd("resync", "--all", "--format", "json")
        assert resynced.returncode in (0, 1), resynced.stderr
        with database.engine.begin() as connection:
            claimed_by = connection.execute(
                select(Task.claimed_by).where(
                    Task.user_id == user_id, Task.status == TaskStatus.RUNNING
                )
            ).scalar_one()
            assert claimed_by == token
            connection.execute(update(Task).where(Task.user_id == user_id).values(lease_until=None))
    finally:
        database.close()


def _done_count(database: Database) -> int:
    with database.sessions() as session:
        return len(session.scalars(select(Task.id).where(Task.status == TaskStatus.DONE)).all())


def _terminate_other_sessions(url: str) -> int:
    """End every other session on the database, as a PostgreSQL restart or failover would."""
    with admin_connection(url) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return sum(1 for (ok,) in ended if ok)


@pytest.mark.timeout(240)
def test_a_group_whose_database_sessions_are_all_ended_mid_pass_finishes_it_once(
    shared: Deployment, tmp_path: Path
) -> None:
    """Every session of both instances (pooled, heartbeat, run lock) is ended while they drain
    a pass: each step whose write was cut is retried, nobody exits, and every user still ends
    with one key pair and one identity, the recorded ones, and no orphan KMS key."""
    emails = sandbox_users(USERS)
    shared.set_users(emails)
    shared.update_config(pipeline={"claim_timeout": "10m"})  # no task waits out a lease
    shared.admin("POST", "faults", {"latency_ms": 250})
    database = Database.open(shared.config.state.url)
    daemons = [_start(shared, tmp_path, "a"), _start(shared, tmp_path, "b")]
    try:
        wait_until(lambda: _done_count(database) >= 3, "a few users provisioned", 120)
        assert _done_count(database) < USERS, "the pass ended before the sessions were cut"
        ended = 0
        for _ in range(15):  # again and again, so that some are cut inside a transaction
            ended += _terminate_other_sessions(shared.config.state.url)
            time.sleep(0.2)
        assert ended >= 15
        shared.admin("POST", "faults", {})
        wait_until(
            lambda: _all_done(database, USERS),
            "every user provisioned",
            90,
            on_fail="\n".join(d.log()[-3000:] for d in daemons),
        )
        assert all(d.running() for d in daemons), "\n".join(d.log()[-3000:] for d in daemons)
        with database.sessions() as session:
            pairs = session.scalars(select(KeyPair)).all()
            kms_keys = session.scalars(
                select(KmsKey.id).where(KmsKey.label.like("syncd:user%"))
            ).all()
            ids = {
                email: user_id for email, user_id in session.execute(select(User.email, User.id))
            }
        assert sorted(p.user_id for p in pairs) == sorted(set(p.user_id for p in pairs))
        assert set(kms_keys) == {p.kms_private_key_id for p in pairs}
        recorded = {p.user_id: p.gmail_key_pair_id for p in pairs}
        for email in emails:
            keypairs, identity = gmail_state(shared, email)
            assert len(keypairs) == 1, email
            assert identity is not None and identity["primaryKeyPairId"] == recorded[ids[email]]
        # Both are members again (the heartbeat rejoins after its session was ended).
        wait_until(
            lambda: _members(shared) == {str(d.process.pid) for d in daemons},
            "both instances listed by syncd status --instances",
            30,
        )
    finally:
        for daemon in daemons:
            code = daemon.stop()
            daemon.notify.close()
            daemon.notify.path.unlink(missing_ok=True)
            assert code == 0, daemon.log()[-3000:]
        database.close()
    logs = "\n".join(d.log() for d in daemons)
    assert "Traceback" not in logs, logs[-6000:]


def test_a_member_whose_clock_is_off_the_databases_says_so_once(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="syncd.instances")
    database = Database.open(pg_url)
    offset = [timedelta(seconds=42)]
    me = Membership(database, 2, clock=lambda: datetime.now(UTC) + offset[0])
    try:
        me.join()
        me.heartbeat()
        skewed = [r.getMessage() for r in caplog.records if "clock" in r.getMessage()]
        assert len(skewed) == 1, skewed
        assert skewed[0].startswith("this host's clock is 42.")
        assert "ahead of the database server's" in skewed[0] and "NTP" in skewed[0]
        offset[0] = timedelta(0)
        me.heartbeat()
        assert caplog.records[-1].getMessage() == (
            "this host's clock agrees with the database server's again"
        )
    finally:
        me.leave()
        database.close()


def test_a_failing_heartbeat_is_reported_once_in_one_line_and_its_recovery(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="syncd.instances")
    database = Database.open(pg_url)
    nowhere = Database.open(
        pg_url.replace(f":{make_url(pg_url).port}/", f":{free_port()}/"), require_current=False
    )
    me = Membership(database, 2).join()
    try:
        me.database = nowhere  # the server stops answering
        me.beat_once()
        me.beat_once()
        failures = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(failures) == 1, failures
        assert failures[0].startswith("instance heartbeat failed: state.url: the database ")
        assert "is unavailable" in failures[0] and "\n" not in failures[0]
        me.database = database
        me.beat_once()
        assert caplog.records[-1].getMessage() == (
            "instance heartbeat: the state store answers again"
        )
    finally:
        me.leave()
        nowhere.close()
        database.close()
