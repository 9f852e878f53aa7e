"""bench/latency.py --instances: throughput of a shared group (``state.shared``) against one
instance, when Google's latency dominates.

For each instance count N (``--instances 1,2,3``), in a fresh database of one throwaway
PostgreSQL server (bench/postgres_server.py) and a fresh sandbox with the latency injected:
  * the deployment is bench/provision.py's (local KMS, static directory, the test CA's issuer
    imported), switched to the PostgreSQL database with ``state.shared: true``,
    ``pipeline.workers: W`` per instance, ``pipeline.poll_interval: 0.2s`` and
    ``schedule.interval: 1h``;
  * N-1 ``syncd run`` followers start with an empty users file; the bench waits until they are
    registered in ``instances`` and the group's first (empty) pass has finished;
  * the U users are written, and one ``syncd sync --once`` (instance N) plans the pass under
    the run lock and works the queue with the followers (they find the tasks within a poll
    interval);
  * the bench polls the database (every 0.1 s) until every user has an active key pair and no
    task is open; the pass lasts from the sync run's start (its row in ``runs``) to the last
    task's ``finished_at``; the command's own start-up (imports, a second or more) is left out
    because it is the same for every N and would only dilute the ratio; the whole command's
    time is printed too, and so are the planning time (the run's start to the tasks' enqueue,
    under the run lock: nothing runs meanwhile) and when each instance started and ended its
    part (audit log, tasks).
It prints per N the users/s, the ratio to N = 1 measured in the same run, the Google calls a
user (sandbox stats, token requests apart), how many tasks each instance finished, and whether
2 instances reached 1.7x one.

Why one worker per instance by default (``--instance-workers``): the figure is about the group
sharing a pass, so each instance must be limited by Google's latency, not by the CPU. A user
costs about 100 ms of syncd CPU (key generation most of it) against 3 calls x 200 ms of waiting;
on the 2 shared cores of the development machine, already saturated by other work (load 12,
0% idle), each added concurrent user slows every other one: one instance reached 1.2, 2.2 and
3.2 users/s with 1, 2 and 4 workers (0.71, 0.66 and 0.47 of the latency bound), and two
instances of 2 workers reached 0.92 of one instance with 4 (``--control``). So with 2 workers
an instance, 2 instances reach about 1.5x one on that machine, the machine's limit and not the
group's; with 1 worker an instance, 1.8-1.9x (3 instances: 2.4-2.6x). ``--control`` measures
this in the same run: for each N > 1 it also runs one instance with N x W workers, the same
concurrency in one process; a group reaching about 1.0 of it loses nothing for being shared
(what it loses: a follower starts its part 1-2 s after the pass is enqueued, its poll interval
plus building its services on a loaded machine). ``N = 1`` is ``syncd sync --once`` alone in the
same shared configuration, so the ratios compare the same code path. On a quiet machine a
larger W keeps the group latency-bound too (3 instances of 2 workers ask for 10 users/s, about
1 core of syncd).

With ``--group-rate R`` the group runs with ``google.requests_per_second: R`` (otherwise
100,000, bench/provision.py's deployment) and the bench samples the sandbox's request counts
every second during the pass: it prints the group's mean rate over the pass and the highest
rate over any 3-second window. The limiter lets each instance start with a burst of its share
(``R / N`` calls), so a window of T seconds may hold up to R x (T + 1) calls.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import yaml
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select

from bench.cpu import process_cpu_seconds
from bench.postgres_server import PostgresServer
from bench.provision import DOMAIN, _free_port, _wait_for, deploy, prepare_store
from bench.sandbox_admin import admin
from syncd.config import Config, load_config
from syncd.domain import KeyPairStatus, TaskStatus
from syncd.sandbox import init_sandbox_data
from syncd.state.db import Database
from syncd.state.models import AuditEvent, Instance, KeyPair, Run, Task
from tests.support.testca import TestHierarchy

TOKEN_METHOD = "oauth2.token"
MIN_SANDBOX_THREADS = 64
TARGET_TWO = 1.7
POLL_SECONDS = 0.1
RATE_WINDOW = 3
OPEN = (TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.FAILED)


@dataclass(frozen=True)
class GroupMeasured:
    instances: int
    users: int
    workers: int
    pass_seconds: float
    command_seconds: float
    calls: dict[str, int]
    done_by_instance: list[int]
    group_cpu: float = 0.0
    """CPU seconds of the group's syncd processes over the pass (the command's start-up too)."""
    sandbox_cpu: float = 0.0
    machine_idle: float = 0.0
    """The machine's idle share of CPU time over the pass (0: every core busy)."""
    plan_seconds: float = 0.0
    """From the pass's start to its tasks' enqueue (under the run lock; no task runs yet)."""
    timeline: list[tuple[float, float]] = field(default_factory=list)
    """Each instance's first action and last task done, seconds after the pass started."""
    rate_samples: list[tuple[float, int]] = field(default_factory=list)
    """(seconds since the pass started, Google requests so far), one a second."""

    @property
    def rate(self) -> float:
        return self.users / self.pass_seconds

    @property
    def calls_per_user(self) -> float:
        return sum(self.calls.values()) / self.users

    @property
    def mean_request_rate(self) -> float:
        return sum(self.calls.values()) / self.pass_seconds

    def peak_request_rate(self, window: int = RATE_WINDOW) -> float:
        """The most requests over any ``window`` consecutive samples' span, per second."""
        best = 0.0
        for start, end in zip(self.rate_samples, self.rate_samples[window:], strict=False):
            span = end[0] - start[0]
            if span > 0:
                best = max(best, (end[1] - start[1]) / span)
        return best


def _machine_jiffies() -> tuple[int, int]:
    """(idle, total) CPU time of the machine so far, from /proc/stat, in clock ticks."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])


def _shared_config(config_path: Path, url: str, workers: int, rate: float) -> Config:
    """bench/provision.py's configuration, on PostgreSQL as a shared group."""
    data: dict[str, Any] = yaml.safe_load(config_path.read_text())
    data["state"] = {"url": url, "shared": True}
    data["pipeline"] = {"workers": workers, "poll_interval": "0.2s"}
    data["schedule"] = {"interval": "1h"}
    data["google"]["requests_per_second"] = rate
    data["logging"] = {"level": "INFO"}
    config_path.write_text(yaml.safe_dump(data))
    return load_config(config_path)


def _syncd(config_path: Path, log: Path, *command: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "SYNCD_CRASH_AT")}
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "syncd", "--config", str(config_path), *command],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 30 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"


def _fail(what: str, logs: list[Path]) -> NoReturn:
    raise SystemExit(
        f"bench: {what}; logs:\n" + "\n".join(f"--- {log.name}\n{_tail(log)}" for log in logs)
    )


def _wait(condition: Callable[[], bool], what: str, timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            _fail(f"{what} not within {timeout:.0f} s", logs)
        time.sleep(POLL_SECONDS)


def _followers_ready(database: Database, count: int) -> bool:
    with database.sessions() as session:
        members = session.scalar(select(func.count()).select_from(Instance)) or 0
        finished = session.scalar(
            select(func.count()).select_from(Run).where(Run.finished_at.is_not(None))
        )
    return members == count and (count == 0 or (finished or 0) >= 1)


def _all_done(database: Database, users: int) -> bool:
    with database.sessions() as session:
        active = session.scalar(
            select(func.count(func.distinct(KeyPair.user_id))).where(
                KeyPair.status == KeyPairStatus.ACTIVE
            )
        )
        open_tasks = session.scalar(
            select(func.count()).select_from(Task).where(Task.status.in_(OPEN))
        )
    return active == users and not open_tasks


def _google_requests(port: int) -> dict[str, int]:
    stats = admin(port, "GET", "stats")["methods"]
    return {name: int(v["requests"]) for name, v in stats.items() if name != TOKEN_METHOD}


def measure_group(
    server: PostgresServer,
    hierarchy: TestHierarchy,
    *,
    instances: int,
    users: int,
    workers: int,
    latency_ms: float,
    bits: int,
    rate: float,
) -> GroupMeasured:
    """One instance count: N-1 followers, then one ``syncd sync --once`` of ``users`` users."""
    with tempfile.TemporaryDirectory(prefix="syncd-group-") as tmp:
        work = Path(tmp)
        root_pem = hierarchy.root_cert.public_bytes(serialization.Encoding.PEM)
        mailboxes = [f"user{i:05d}@{DOMAIN}" for i in range(users)] + [f"admin@{DOMAIN}"]
        init_sandbox_data(work / "sandbox", DOMAIN, mailboxes, root_pem)
        port = _free_port()
        threads = max(MIN_SANDBOX_THREADS, 2 * instances * workers)
        sandbox = subprocess.Popen(
            [
                *(sys.executable, "-m", "syncd", "sandbox", "serve", "--port", str(port)),
                *("--data", str(work / "sandbox"), "--threads", str(threads)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes: list[subprocess.Popen[bytes]] = []
        logs: list[Path] = []
        database: Database | None = None
        try:
            _wait_for(port, sandbox)
            deploy(work, hierarchy, users, workers, bits, port, None)
            users_file = work / "users.yaml"
            listed = users_file.read_text()
            config_path = work / "syncd.yaml"
            config = _shared_config(config_path, server.create_database(), workers, rate)
            prepare_store(config, hierarchy)
            users_file.write_text(yaml.safe_dump({"users": []}))
            admin(port, "POST", "faults", {"latency_ms": latency_ms, "token_endpoint": False})
            database = Database.open(config.state.url)
            for number in range(instances - 1):
                logs.append(work / f"follower-{number}.log")
                processes.append(_syncd(config_path, logs[-1], "run"))
            store = database
            _wait(
                lambda: _followers_ready(store, instances - 1),
                f"{instances - 1} followers registered and the first pass done",
                120,
                logs,
            )
            users_file.write_text(listed)
            admin(port, "POST", "stats:reset")
            followers_cpu = sum(process_cpu_seconds(p.pid) for p in processes)
            sandbox_cpu = process_cpu_seconds(sandbox.pid)
            children_cpu = _children_cpu()
            idle, total = _machine_jiffies()
            logs.append(work / "sync-once.log")
            started = time.perf_counter()
            once = _syncd(config_path, logs[-1], "sync", "--once")
            processes.append(once)
            samples: list[tuple[float, int]] = []
            pass_start: datetime | None = None
            next_sample = 0.0
            while not _all_done(database, users):
                if time.perf_counter() - started > 900:
                    _fail("not every user provisioned within 900 s", logs)
                follower_gone = any(p.poll() is not None for p in processes[:-1])
                if follower_gone or once.poll() not in (None, 0):
                    _fail("a syncd process exited before every user was provisioned", logs)
                if pass_start is None:
                    pass_start = _pass_start(database, once.pid)
                elif time.perf_counter() >= next_sample:
                    elapsed = (datetime.now(UTC) - pass_start).total_seconds()
                    samples.append((elapsed, sum(_google_requests(port).values())))
                    next_sample = time.perf_counter() + 1.0
                time.sleep(POLL_SECONDS)
            done_at = datetime.now(UTC)
            followers_cpu = sum(process_cpu_seconds(p.pid) for p in processes[:-1]) - followers_cpu
            sandbox_cpu = process_cpu_seconds(sandbox.pid) - sandbox_cpu
            idle_after, total_after = _machine_jiffies()
            machine_idle = (idle_after - idle) / max(1, total_after - total)
            pass_start = pass_start or _pass_start(database, once.pid)
            assert pass_start is not None
            timing = _timing(database, pass_start)
            pass_seconds = max(end for _, end in timing.timeline) if timing.timeline else 0.0
            pass_seconds = pass_seconds or (done_at - pass_start).total_seconds()
            calls = _google_requests(port)
            samples.append((pass_seconds, sum(calls.values())))
            if once.wait(120) != 0:
                _fail(f"syncd sync --once exited with {once.returncode}", logs)
            command_seconds = time.perf_counter() - started
            group_cpu = followers_cpu + _children_cpu() - children_cpu
            done_by = _done_by_instance(database)
        finally:
            for process in processes:
                _stop(process)
            if database is not None:
                database.close()
            sandbox.send_signal(signal.SIGINT)
            try:
                sandbox.wait(timeout=30)
            except subprocess.TimeoutExpired:
                sandbox.kill()
                sandbox.wait()
    return GroupMeasured(
        instances=instances,
        users=users,
        workers=workers,
        pass_seconds=pass_seconds,
        command_seconds=command_seconds,
        calls=calls,
        done_by_instance=done_by,
        group_cpu=group_cpu,
        sandbox_cpu=sandbox_cpu,
        machine_idle=machine_idle,
        plan_seconds=timing.plan_seconds,
        timeline=timing.timeline,
        rate_samples=samples,
    )


@dataclass(frozen=True)
class _Timing:
    plan_seconds: float
    timeline: list[tuple[float, float]]


def _timing(database: Database, start: datetime) -> _Timing:
    """When the tasks were enqueued, and when each instance started and ended its part,
    from the store's timestamps (tasks, audit log), in seconds after ``start``."""
    with database.sessions() as session:
        enqueued = session.scalar(select(func.max(Task.created_at)))
        ends = session.execute(
            select(Run.pid, func.max(Task.finished_at))
            .join(Task, Task.run_id == Run.id)
            .where(Task.status == TaskStatus.DONE)
            .group_by(Run.pid)
        ).all()
        starts = dict(
            session.execute(
                select(Run.pid, func.min(AuditEvent.at))
                .join(AuditEvent, AuditEvent.run_id == Run.id)
                .where(AuditEvent.at > enqueued, AuditEvent.user_id.is_not(None))
                .group_by(Run.pid)
            ).all()
        )

    def after(moment: datetime | None) -> float:
        return (moment - start).total_seconds() if moment is not None else float("nan")

    timeline = sorted((after(starts.get(pid)), after(end)) for pid, end in ends)
    return _Timing(after(enqueued), timeline)


def _children_cpu() -> float:
    """User + system CPU seconds of this process's children waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _pass_start(database: Database, pid: int) -> datetime | None:
    with database.sessions() as session:
        return session.scalar(
            select(Run.started_at).where(Run.kind == "sync", Run.pid == pid).order_by(Run.id)
        )


def _done_by_instance(database: Database) -> list[int]:
    """Tasks done, by the process whose run last worked them (most first)."""
    with database.sessions() as session:
        pids = session.scalars(
            select(Run.pid).join(Task, Task.run_id == Run.id).where(Task.status == TaskStatus.DONE)
        ).all()
    return sorted(Counter(pids).values(), reverse=True)
