"""The members of a shared group (``state.shared``): syncd processes on one PostgreSQL store.

Each member registers a row in ``instances`` whose id is the token its task claims carry, and
keeps it alive with a heartbeat thread (every HEARTBEAT_SECONDS). A member is live while its
heartbeat is recent (LIVE_FOR); the Google request rate limit is split between the live
members (``group_size``), so the group as a whole keeps ``google.requests_per_second``.

At each heartbeat a member also cleans up after the dead: a member whose pid is gone (killed,
crashed) is removed and its claims released at once, so its tasks are taken over without
waiting for their leases; rows silent for a day are removed. Only a member in the same kernel
and PID namespace (``pid_namespace``: boot id and namespace inode, not the hostname, which
containers and cloned machines share) can tell that a pid is gone; a member elsewhere that dies
keeps its claims until their leases end (``pipeline.claim_timeout``).

Heartbeats are written and compared in the database server's clock, so liveness does not
depend on the hosts' clocks; claim leases do, so every heartbeat also compares this host's
clock with the database server's and warns when they are seconds apart. A member joining a
group whose others are live starts using its share of the Google rate one heartbeat later,
once they have taken their smaller shares.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from syncd.domain import TaskStatus
from syncd.state.db import Database, database_error
from syncd.state.lock import pid_alive, pid_namespace
from syncd.state.models import Instance, Task
from syncd.state.queries import INSTANCE_LIVE_FOR

log = logging.getLogger("syncd.instances")

HEARTBEAT_SECONDS = 5.0
LIVE_FOR = INSTANCE_LIVE_FOR
"""A member whose last heartbeat is older than this is not counted in the group (three
heartbeats missed)."""
FORGET_AFTER = timedelta(days=1)
LEAVE_SECONDS = 10.0
"""How long leaving waits for the state store to remove the member: a database that stopped
answering must not hold a stopping daemon until systemd kills it."""
CLOCK_SKEW_WARNING = timedelta(seconds=2)
"""Members take over claims whose leases other hosts' clocks wrote: a clock this far from the
database's is reported (once, until it is back)."""


def _now() -> datetime:
    return datetime.now(UTC)


def live_count(connection: Connection, now: datetime) -> int:
    query = select(func.count()).select_from(Instance).where(Instance.heartbeat_at > now - LIVE_FOR)
    return int(connection.execute(query).scalar_one())


def release_claims_of(connection: Connection, token: int) -> int:
    """End the leases of the running tasks ``token`` claimed: other members take them now."""
    result = connection.execute(
        update(Task)
        .where(Task.claimed_by == token, Task.status == TaskStatus.RUNNING)
        .values(lease_until=None)
    )
    return int(result.rowcount)


def database_now(connection: Connection) -> datetime:
    """The database server's clock: heartbeats are written and compared in it, so members
    count each other live whatever their own clocks say."""
    value: datetime = connection.execute(select(func.now())).scalar_one()
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def skew_problem(skew: timedelta) -> str | None:
    """What a clock ``skew`` from the database's does to a shared group, or None if small."""
    if abs(skew) < CLOCK_SKEW_WARNING:
        return None
    way = "ahead of" if skew > timedelta(0) else "behind"
    return (
        f"this host's clock is {abs(skew.total_seconds()):.1f} s {way} the database server's: "
        "claim leases (pipeline.claim_timeout) are written and taken over by the members' own "
        "clocks; synchronise the hosts' clocks (NTP)"
    )


def sweep(connection: Connection, now: datetime, namespace: str | None, me: int) -> list[str]:
    """Remove the dead: members of this process's PID ``namespace`` whose pid is gone (their
    claims released) and members silent for FORGET_AFTER. Returns what was done, a line each."""
    done = []
    rows = connection.execute(
        select(
            Instance.id, Instance.host, Instance.pid, Instance.pid_namespace, Instance.heartbeat_at
        )
    )
    for token, host, pid, row_namespace, heartbeat in rows.all():
        if token == me:
            continue
        if namespace is not None and row_namespace == namespace and not pid_alive(pid):
            released = release_claims_of(connection, token)
            connection.execute(delete(Instance).where(Instance.id == token))
            done.append(
                f"instance {host}:{pid} (token {token}) is gone: its {released} claimed "
                "task(s) are free to take over"
            )
        elif heartbeat < now - FORGET_AFTER:
            connection.execute(delete(Instance).where(Instance.id == token))
    return done


class Divisible(Protocol):
    """A rate limiter that keeps to a share of a group's rate (syncd.google.ratelimit)."""

    def divide_among(
        self, group_size: Callable[[], int], starting: Callable[[], float] = ...
    ) -> None: ...


class Membership:
    """This process's membership of the group: register, heartbeat, leave.

    ``group_size()`` is the number of live members, itself included, as of the last heartbeat.
    """

    def __init__(
        self, database: Database, workers: int, clock: Callable[[], datetime] = _now
    ) -> None:
        self.database = database
        self.workers = workers
        self.clock = clock
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.pid_namespace = pid_namespace()
        self.token = 0
        self._size = 1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._skew_reported = False
        self._unreachable: str | None = None
        self._share_from = 0.0

    @property
    def name(self) -> str:
        return f"{self.host}:{self.pid}"

    def group_size(self) -> int:
        return self._size

    def share(self, limiter: Divisible) -> None:
        """Make ``limiter`` keep to this member's share of the group's Google rate."""
        limiter.divide_among(self.group_size, self.share_from)

    def share_from(self) -> float:
        """When (``time.monotonic()``) this member may start using its share of the group's
        Google rate: one heartbeat after joining a group whose others were live."""
        return self._share_from

    def join(self) -> Membership:
        with self.database.engine.begin() as connection:
            now = database_now(connection)
            self.token = int(
                connection.execute(
                    insert(Instance)
                    .values(
                        host=self.host,
                        pid=self.pid,
                        pid_namespace=self.pid_namespace,
                        started_at=now,
                        heartbeat_at=now,
                        workers=self.workers,
                    )
                    .returning(Instance.id)
                ).scalar_one()
            )
            self._refresh(connection, now)
        if self._size > 1:
            # The others take their smaller shares at their next heartbeat: until then this
            # member's share would take the group over google.requests_per_second.
            self._share_from = time.monotonic() + HEARTBEAT_SECONDS
        log.info("joined the shared group as instance %s (token %d)", self.name, self.token)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._beat, name="syncd-instance-heartbeat", daemon=True
        )
        self._thread.start()
        return self

    def _refresh(self, connection: Connection, now: datetime) -> None:
        """Sweep the dead and recount the group at ``now`` (the database's clock)."""
        for line in sweep(connection, now, self.pid_namespace, self.token):
            log.warning("%s", line)
        self._size = max(1, live_count(connection, now))
        problem = skew_problem(self.clock() - now)
        if problem is not None and not self._skew_reported:
            log.warning("%s", problem)
        elif problem is None and self._skew_reported:
            log.info("this host's clock agrees with the database server's again")
        self._skew_reported = problem is not None

    def heartbeat(self) -> None:
        """Prove this member alive, clean up after dead ones, and recount the group."""
        with self.database.engine.begin() as connection:
            now = database_now(connection)
            alive = connection.execute(
                update(Instance).where(Instance.id == self.token).values(heartbeat_at=now)
            ).rowcount
            if alive != 1:
                if self._stop.is_set():  # a late beat of a member leaving: it was removed
                    return
                # Removed by another member (its heartbeat a day old, or its pid taken for
                # gone): register again under the same token, so its claims stay valid.
                connection.execute(
                    insert(Instance).values(
                        id=self.token,
                        host=self.host,
                        pid=self.pid,
                        pid_namespace=self.pid_namespace,
                        started_at=now,
                        heartbeat_at=now,
                        workers=self.workers,
                    )
                )
            self._refresh(connection, now)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self.beat_once()

    def beat_once(self) -> None:
        """One heartbeat of the thread: a failure is logged when heartbeats start failing and
        when they work again, not at every beat."""
        try:
            self.heartbeat()
        except DBAPIError as error:
            self._report_unreachable(str(database_error(error, self.database.engine.url)))
        except SQLAlchemyError as error:
            self._report_unreachable(str(error).splitlines()[0])
        else:
            if self._unreachable is not None:
                log.info("instance heartbeat: the state store answers again")
                self._unreachable = None

    def _report_unreachable(self, message: str) -> None:
        """One warning when heartbeats start failing, not one every HEARTBEAT_SECONDS."""
        if self._unreachable is None:
            log.warning(
                "instance heartbeat failed: %s; other members count this one dead after "
                "%.0f s without one, and its claims still hold until their leases end",
                message,
                LIVE_FOR.total_seconds(),
            )
        self._unreachable = message

    def leave(self) -> None:
        """Stop the heartbeat and remove this member (its claims were released by the runner),
        waiting at most LEAVE_SECONDS for the database."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=HEARTBEAT_SECONDS)
            self._thread = None
        token, self.token = self.token, 0
        if not token:
            return
        remover = threading.Thread(
            target=self._remove, args=(token,), name="syncd-instance-leave", daemon=True
        )
        remover.start()
        remover.join(timeout=LEAVE_SECONDS)
        if remover.is_alive():
            log.warning(
                "cannot remove instance %s from the group: the state store did not answer "
                "within %.0f s; the others count it dead %.0f s after its last heartbeat",
                self.name,
                LEAVE_SECONDS,
                LIVE_FOR.total_seconds(),
            )

    def _remove(self, token: int) -> None:
        try:
            with self.database.engine.begin() as connection:
                connection.execute(delete(Instance).where(Instance.id == token))
        except SQLAlchemyError as error:
            log.warning("cannot remove instance %s from the group: %s", self.name, error)
