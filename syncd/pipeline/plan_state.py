"""What a pass reads from the state store to plan, and what a directory snapshot writes back.

The plan's views of every user, the live claims other passes hold on running tasks (those users
are held), and the users updated from a snapshot (seen, missing since, in scope). Every function
takes the caller's Session and leaves committing to it.
"""

from __future__ import annotations

import socket
from collections import defaultdict
from collections.abc import Collection, Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from syncd.directory.base import DirectoryUser, Snapshot
from syncd.domain import KeyPairStatus, ReasonCode, TaskStatus
from syncd.pipeline import skipped
from syncd.pipeline.claims import ForeignClaim, claim_holds, hold_reason
from syncd.pipeline.tasks import HOLDING, OPEN
from syncd.plan import CredentialView, RetiredKeyPair, TaskView, UserView
from syncd.state import audit
from syncd.state.lock import describe_holder, pid_alive
from syncd.state.models import KeyPair, Run, Task, User

_RETIRED = (KeyPairStatus.SUPERSEDED, KeyPairStatus.DISABLED)
_CHUNK = 500  # users looked up per query (SQLite caps bound parameters)


def credential_view(kp: KeyPair) -> CredentialView:
    """The plan's view of an active key pair."""
    return CredentialView(
        kp.generation,
        kp.not_after,
        not_before=kp.not_before,
        verified_at=kp.verified_at,
        drift=ReasonCode(kp.drift) if kp.drift else None,
        drift_detail=kp.drift_detail,
        profile=kp.profile,
        origin=kp.origin,
    )


def load_views(session: Session) -> list[UserView]:
    """Every user the state store knows, as the plan sees them (three queries in all)."""
    key_pairs: dict[int, list[KeyPair]] = defaultdict(list)
    for kp in session.scalars(select(KeyPair).order_by(KeyPair.generation)):
        key_pairs[kp.user_id].append(kp)
    open_tasks = {
        task.user_id: task for task in session.scalars(select(Task).where(Task.status.in_(OPEN)))
    }
    views = []
    for user in session.scalars(select(User).order_by(User.email)):
        mine = key_pairs.get(user.id, [])
        active = [kp for kp in mine if kp.status is KeyPairStatus.ACTIVE]
        task = open_tasks.get(user.id)
        views.append(
            UserView(
                email=user.email,
                directory_id=user.directory_id,
                in_scope=user.in_scope,
                active=credential_view(active[-1]) if active else None,
                open_task=TaskView(
                    task.kind,
                    task.status,
                    task.next_step,
                    task.attempts,
                    task.next_attempt_at,
                    task.last_error,
                    task.permanent,
                )
                if task
                else None,
                holds_credentials=any(kp.status in HOLDING for kp in mine),
                missing_since=user.missing_since,
                retired=tuple(
                    RetiredKeyPair(kp.generation, kp.status, kp.superseded_at, kp.disabled_at)
                    for kp in mine
                    if kp.status in _RETIRED
                ),
                previous_email=user.previous_email,
                aliases=tuple(user.aliases or ()),
            )
        )
    return views


def record_snapshot(
    session: Session,
    snapshot: Snapshot,
    now: datetime,
    run_id: int | None,
    kept_in_scope: Collection[str] = frozenset(),
    renames: Iterable[tuple[str, str]] = (),
    reassigned: Collection[str] = frozenset(),
) -> skipped.SkippedChanges:
    """Update users from the snapshot: new ones added, listed ones seen, absent ones out of scope
    unless ``kept_in_scope`` (the plan decided nothing about them: held or blocked).

    ``renames`` (the plan's ``Plan.renames``: new address, old address) first move users to
    their new address: the same row (one history), the old address kept as
    ``previous_email``. A listed user whose directory id changed (an address given to someone
    else) takes the new id, audited as reassigned, when the plan ends the old credential this
    pass (``reassigned``) or there is none; otherwise (the reassignment blocked by the
    deprovision limit, or held) the old id stays, so the next pass sees the change again.

    ``missing_since`` starts at the first read that misses a user and clears when a read lists
    them, or has an entry naming them that it skipped (present, though unusable). Returns how
    the skipped entries changed (recorded and audited here).
    """
    users = {user.email: user for user in session.scalars(select(User))}
    listed = snapshot.by_email()
    _rename(session, users, renames, run_id)
    waiting = _reassignments_waiting(session, users, listed, reassigned)
    for email, entry in listed.items():
        user = users.get(email)
        if user is None:
            session.add(
                User(
                    email=email,
                    directory_id=entry.directory_id,
                    source=snapshot.source,
                    in_scope=True,
                    enabled=entry.enabled,
                    first_seen=now,
                    last_seen=now,
                    aliases=list(entry.aliases),
                )
            )
            continue
        if user.directory_id != entry.directory_id and email not in waiting:
            audit.record(
                session,
                "user.reassigned",
                user=user,
                run_id=run_id,
                code=ReasonCode.ADDRESS_REUSED.value,
                old_directory_id=user.directory_id,
                new_directory_id=entry.directory_id,
            )
            user.directory_id = entry.directory_id
        user.source = snapshot.source
        user.in_scope = True
        user.enabled = entry.enabled
        user.last_seen = now
        user.missing_since = None
        if list(entry.aliases) != (user.aliases or []):
            user.aliases = list(entry.aliases)
    named_emails, named_ids = snapshot.skipped_identities()
    for email, user in users.items():
        if email in listed:
            continue
        if email in named_emails or user.directory_id in named_ids:
            user.missing_since = None
        elif user.missing_since is None:
            user.missing_since = now
        if user.in_scope and email not in kept_in_scope:
            user.in_scope = False
    return skipped.record(session, snapshot, now, run_id, users)


def _rename(
    session: Session,
    users: dict[str, User],
    renames: Iterable[tuple[str, str]],
    run_id: int | None,
) -> None:
    """Move each renamed user's row to the new address (``users`` follows)."""
    for new, old in renames:
        user = users.get(old)
        if user is None or new in users:  # not the state the plan saw: leave it to the loop
            continue
        user.previous_email = old
        user.email = new
        users[new] = users.pop(old)
        audit.record(
            session,
            "user.renamed",
            user=user,
            run_id=run_id,
            code=ReasonCode.RENAMED.value,
            old_email=old,
            new_email=new,
            directory_id=user.directory_id,
        )
    session.flush()  # the new addresses are taken before any new user is added


def _reassignments_waiting(
    session: Session,
    users: dict[str, User],
    listed: dict[str, DirectoryUser],
    reassigned: Collection[str],
) -> set[str]:
    """Listed users under a new directory id whose old credential is still held and not
    ended this pass."""
    changed = {
        user.id: email
        for email, entry in listed.items()
        if (user := users.get(email)) is not None
        and user.directory_id != entry.directory_id
        and email not in reassigned
    }
    ids, holding = list(changed), set()
    for first in range(0, len(ids), _CHUNK):
        chunk = ids[first : first + _CHUNK]
        holding |= set(
            session.scalars(
                select(KeyPair.user_id).where(
                    KeyPair.user_id.in_(chunk), KeyPair.status.in_(HOLDING)
                )
            )
        )
        holding |= set(
            session.scalars(
                select(Task.user_id).where(Task.user_id.in_(chunk), Task.status.in_(OPEN))
            )
        )
    return {changed[user_id] for user_id in holding}


def last_pass_start(session: Session, current_run: int | None = None) -> datetime | None:
    """When the latest sync pass before ``current_run`` (or before now) started; None if none."""
    query = select(Run.started_at).where(Run.kind == "sync")
    if current_run is not None:
        query = query.where(Run.id < current_run)
    return session.scalar(query.order_by(Run.id.desc()).limit(1))


def foreign_claims(session: Session, now: datetime) -> list[ForeignClaim]:
    """The claims other passes hold on running tasks whose lease has not ended."""
    rows = session.execute(
        select(User.email, Task.claimed_by, Task.lease_until, Task.run_id, Run.host, Run.pid)
        .join(User, User.id == Task.user_id)
        .outerjoin(Run, Run.id == Task.run_id)
        .where(Task.status == TaskStatus.RUNNING, Task.claimed_by.is_not(None))
    )
    here = socket.gethostname()
    return [
        ForeignClaim(
            email=row.email,
            token=row.claimed_by,
            lease_until=row.lease_until,
            run_id=row.run_id,
            holder=describe_holder(f"pid={row.pid} host={row.host}")
            if row.host is not None
            else "holder unknown",
            holder_gone=row.host == here and not pid_alive(row.pid or 0),
        )
        for row in rows
        if row.lease_until is not None and row.lease_until > now
    ]


def held_by_others(session: Session, token: int | None, now: datetime) -> dict[str, str]:
    """Users whose running task another pass's live claim covers, with the reason to hold them.

    ``token``: this pass's run-lock token (None for a dry run, which holds no claim).
    """
    return {
        claim.email: hold_reason(claim)
        for claim in foreign_claims(session, now)
        if claim_holds(claim, token, now)
    }
