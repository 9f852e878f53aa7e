"""What a pass reads from the state store to plan, and what a directory snapshot writes back.

The plan's views of every user, the live claims other passes hold on running tasks (those users
are held), and the users updated from a snapshot (seen, missing since, in scope). Every function
takes the caller's Session and leaves committing to it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from syncd.directory.base import DirectoryUser, Snapshot
from syncd.domain import KeyPairStatus, ReasonCode, TaskStatus
from syncd.pipeline import skipped
from syncd.pipeline.bulk_rows import JsonTexts, json_text, no_gc_while_building
from syncd.pipeline.claims import ForeignClaim, claim_holds, hold_reason
from syncd.pipeline.tasks import HOLDING, OPEN
from syncd.plan import CredentialView, RetiredKeyPair, TaskView, UserView
from syncd.state import audit
from syncd.state.lock import describe_holder, pid_alive, pid_namespace
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


_USERS = User.metadata.tables["users"]
_KEY_PAIRS = User.metadata.tables["key_pairs"]
_TASKS = User.metadata.tables["tasks"]


def load_views(session: Session) -> list[UserView]:
    """Every user the state store knows, as the plan sees them (three queries in all).

    Core selects of the columns the plan reads, on the tables (no ORM objects, no ORM
    loading), rows unpacked as tuples: a pass at 100,000 users loads them in a fraction of
    the time the entities take.
    """
    with no_gc_while_building():
        return _load_views(session)


def _load_views(session: Session) -> list[UserView]:
    decode = JsonTexts()
    kps, tasks = _KEY_PAIRS.c, _TASKS.c
    active: dict[int, CredentialView] = {}
    holding: set[int] = set()
    retired: dict[int, list[RetiredKeyPair]] = defaultdict(list)
    key_pairs = session.execute(
        select(
            kps.user_id,
            kps.generation,
            kps.status,
            kps.not_after,
            kps.not_before,
            kps.verified_at,
            kps.drift,
            kps.drift_detail,
            json_text(kps.profile),
            kps.origin,
            kps.superseded_at,
            kps.disabled_at,
        )  # unordered (SQLite would sort every row): generations are ordered below
    )
    for (
        user_id,
        generation,
        status,
        not_after,
        not_before,
        verified_at,
        drift,
        drift_detail,
        profile,
        origin,
        superseded_at,
        disabled_at,
    ) in key_pairs:
        if status is KeyPairStatus.ACTIVE and (
            user_id not in active or generation > active[user_id].generation
        ):  # the latest active generation
            active[user_id] = CredentialView(  # positional: 100,000 of them
                generation,
                not_after,
                not_before,
                verified_at,
                ReasonCode(drift) if drift else None,
                drift_detail,
                decode(profile),
                origin,
            )
        if status in HOLDING:
            holding.add(user_id)
        if status in _RETIRED:
            retired[user_id].append(RetiredKeyPair(generation, status, superseded_at, disabled_at))
    for earlier in retired.values():
        earlier.sort(key=attrgetter("generation"))  # oldest first
    open_tasks = {
        row[0]: TaskView(*row[1:])
        for row in session.execute(
            select(
                tasks.user_id,
                tasks.kind,
                tasks.status,
                tasks.next_step,
                tasks.attempts,
                tasks.next_attempt_at,
                tasks.last_error,
                tasks.permanent,
            ).where(tasks.status.in_(OPEN))
        )
    }
    users = _USERS.c
    no_retired: tuple[RetiredKeyPair, ...] = ()
    return [
        UserView(  # positional: 100,000 of them
            email,
            directory_id,
            in_scope,
            active.get(user_id),
            open_tasks.get(user_id),
            user_id in holding,
            missing_since,
            tuple(retired[user_id]) if user_id in retired else no_retired,
            previous_email,
            decode.as_tuple(aliases),
        )
        for (
            user_id,
            email,
            directory_id,
            in_scope,
            missing_since,
            previous_email,
            aliases,
        ) in session.execute(
            select(
                users.id,
                users.email,
                users.directory_id,
                users.in_scope,
                users.missing_since,
                users.previous_email,
                json_text(users.aliases),
            ).order_by(users.email)
        )
    ]


_UserRow = tuple[int, str, str, str, bool, bool, datetime | None, datetime, str | None]
"""A row (unpacked as a tuple): id, email, directory_id, source, in_scope, enabled,
missing_since, last_seen, aliases (the JSON text)."""

LAST_SEEN_STEP = timedelta(days=1)
"""How stale a listed user's ``last_seen`` may get before a pass rewrites it: an idle pass
does not rewrite every user's row (at 100,000 users that UPDATE was the largest write of a
pass that changes nothing, and on PostgreSQL a new version of every row each pass)."""


def _user_rows(session: Session) -> dict[str, _UserRow]:
    """Every user's columns a snapshot may change, by email."""
    users = _USERS.c
    rows: Iterable[_UserRow] = session.execute(
        select(
            users.id,
            users.email,
            users.directory_id,
            users.source,
            users.in_scope,
            users.enabled,
            users.missing_since,
            users.last_seen,
            json_text(users.aliases),
        )
    )
    return {row[1]: row for row in rows}


def _update_rows(session: Session, changes: list[tuple[int, dict[str, Any]]]) -> None:
    """UPDATE each (id, values): one executemany per set of columns changed."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for user_id, values in changes:
        groups[tuple(sorted(values))].append({"_id": user_id, **values})
    for columns, rows in groups.items():
        statement = (
            update(_USERS)
            .where(_USERS.c.id == bindparam("_id"))
            .values({name: bindparam(name) for name in columns})
        )
        session.execute(statement, rows)


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

    ``last_seen``: when a read listed the user, kept to within :data:`LAST_SEEN_STEP`: a
    listed user's is set to ``now`` once it is that old (a new user's, and one listed again
    after being missed or out of scope, at once).

    In bulk, with SQLAlchemy Core: a row is written only where a value changed (an idle pass
    at 100,000 users writes nothing but the ``last_seen`` that came due).
    """
    _rename(session, renames, run_id)
    with no_gc_while_building():
        users = _user_rows(session)
    decode = JsonTexts()
    listed = snapshot.by_email()
    source = snapshot.source
    waiting = _reassignments_waiting(session, users, listed, reassigned)
    added: list[dict[str, Any]] = []
    changes: list[tuple[int, dict[str, Any]]] = []
    due_before = now - LAST_SEEN_STEP
    any_due = False  # a listed user's last_seen is a step old
    for email, entry in listed.items():
        row = users.get(email)
        if row is None:
            added.append(
                {
                    "email": email,
                    "directory_id": entry.directory_id,
                    "source": source,
                    "in_scope": True,
                    "enabled": entry.enabled,
                    "first_seen": now,
                    "last_seen": now,
                    "aliases": list(entry.aliases),
                }
            )
            continue
        user_id, _, directory_id, row_source, in_scope, enabled, missing_since, seen, aliases = row
        any_due = any_due or seen < due_before
        stored_aliases = decode(aliases) or []
        if (
            directory_id == entry.directory_id
            and row_source == source
            and in_scope
            and enabled == entry.enabled
            and missing_since is None
            and (list(entry.aliases) == stored_aliases if entry.aliases else not stored_aliases)
        ):
            continue  # the usual case: nothing changed
        values: dict[str, Any] = {}
        if directory_id != entry.directory_id and email not in waiting:
            audit.record(
                session,
                "user.reassigned",
                user_id=user_id,
                email=email,
                run_id=run_id,
                code=ReasonCode.ADDRESS_REUSED.value,
                old_directory_id=directory_id,
                new_directory_id=entry.directory_id,
            )
            values["directory_id"] = entry.directory_id
        if row_source != source:
            values["source"] = source
        if not in_scope or missing_since is not None:
            values["last_seen"] = now  # listed again: seen now, whatever the step
        if not in_scope:
            values["in_scope"] = True
        if enabled != entry.enabled:
            values["enabled"] = entry.enabled
        if missing_since is not None:
            values["missing_since"] = None
        if list(entry.aliases) != stored_aliases:
            values["aliases"] = list(entry.aliases)
        if values:
            changes.append((user_id, values))
    named_emails, named_ids = snapshot.skipped_identities()
    unseen: list[tuple[int, datetime]] = []  # unlisted, yet in scope and not missing
    for email, row in users.items():
        if email in listed:
            continue
        user_id, _, directory_id, _, in_scope, _, missing_since, last_seen, _ = row
        values = {}
        missing = missing_since
        if email in named_emails or directory_id in named_ids:
            missing = None
        elif missing is None:
            missing = now
        if missing != missing_since:
            values["missing_since"] = missing
        stays = in_scope and email in kept_in_scope
        if in_scope and not stays:
            values["in_scope"] = False
        if values:
            changes.append((user_id, values))
        if stays and missing is None:
            unseen.append((user_id, last_seen))
    if added:
        session.execute(insert(_USERS), added)
    _update_rows(session, changes)
    if not any_due:  # most passes: no listed user's last_seen came due
        return _record_skipped(session, snapshot, now, run_id, users)
    # Every listed user is now in scope and not missing: one UPDATE sets the last_seen that
    # came due; the few unlisted users it also matched (named by a skipped entry, kept in
    # scope) get theirs back.
    due = session.execute(
        update(_USERS)
        .where(
            _USERS.c.in_scope.is_(True),
            _USERS.c.missing_since.is_(None),
            _USERS.c.last_seen < due_before,
        )
        .values(last_seen=now)
    )
    if unseen and due.rowcount:  # type: ignore[attr-defined]
        session.execute(
            update(_USERS)
            .where(_USERS.c.id == bindparam("_id"))
            .values(last_seen=bindparam("seen")),
            [{"_id": user_id, "seen": seen} for user_id, seen in unseen],
        )
    return _record_skipped(session, snapshot, now, run_id, users)


def _record_skipped(
    session: Session,
    snapshot: Snapshot,
    now: datetime,
    run_id: int | None,
    users: Mapping[str, _UserRow],
) -> skipped.SkippedChanges:
    """The snapshot's skipped entries recorded (with the ids of the users they name)."""
    named = {e.email: users[e.email][0] for e in snapshot.skipped if e.email and e.email in users}
    return skipped.record(session, snapshot, now, run_id, named)


def _rename(session: Session, renames: Iterable[tuple[str, str]], run_id: int | None) -> None:
    """Move each renamed user's row to the new address (the ORM, on these few users only)."""
    renames = list(renames)
    if not renames:
        return
    involved = sorted({email for pair in renames for email in pair})
    users = {
        user.email: user
        for first in range(0, len(involved), _CHUNK)
        for user in session.scalars(
            select(User).where(User.email.in_(involved[first : first + _CHUNK]))
        )
    }
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
    users: Mapping[str, _UserRow],
    listed: dict[str, DirectoryUser],
    reassigned: Collection[str],
) -> set[str]:
    """Listed users under a new directory id whose old credential is still held and not
    ended this pass."""
    changed = {
        user[0]: email
        for email, entry in listed.items()
        if (user := users.get(email)) is not None
        and user[2] != entry.directory_id
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
        select(
            User.email,
            Task.claimed_by,
            Task.lease_until,
            Task.run_id,
            Run.host,
            Run.pid,
            Run.pid_namespace,
        )
        .join(User, User.id == Task.user_id)
        .outerjoin(Run, Run.id == Task.run_id)
        .where(Task.status == TaskStatus.RUNNING, Task.claimed_by.is_not(None))
    )
    here = pid_namespace()
    return [
        ForeignClaim(
            email=row.email,
            token=row.claimed_by,
            lease_until=row.lease_until,
            run_id=row.run_id,
            holder=describe_holder(f"pid={row.pid} host={row.host}")
            if row.host is not None
            else "holder unknown",
            holder_gone=here is not None
            and row.pid_namespace == here
            and not pid_alive(row.pid or 0),
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
