"""In a shared group the other instances keep draining while a pass is planned: a resume or a
retry the plan made for an open task is left alone by enqueue when another instance has
finished, failed or advanced that task since the plan saw it, never turned into a second
provisioning nor a permanent failure re-queued."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update

from syncd.app.passes import dry_run
from syncd.domain import ActionKind, KeyPairStatus, TaskStatus
from syncd.pipeline.enqueue import enqueue
from syncd.plan import Action
from syncd.state.models import KeyPair, Task

from .conftest import Deployment, sandbox_users


def _planned(deployment: Deployment) -> Action:
    app = deployment.app()
    try:
        [action] = dry_run(app).plan.actions
    finally:
        app.close()
    return action


def _enqueue(deployment: Deployment, action: Action, *, shared: bool) -> list[int]:
    app = deployment.app()
    try:
        with app.database.transaction() as session:
            return enqueue(session, [action], None, datetime.now(UTC), set(), shared=shared)
    finally:
        app.close()


def _another_instance(deployment: Deployment, **task: object) -> None:
    """What another member's runner writes meanwhile (a finish, a failure, ...)."""
    app = deployment.app()
    try:
        with app.database.engine.begin() as connection:
            connection.execute(update(Task).values(claimed_by=1_000_000_007, **task))
            if task.get("status") is TaskStatus.DONE:
                connection.execute(update(KeyPair).values(status=KeyPairStatus.ACTIVE))
    finally:
        app.close()


def _tasks(deployment: Deployment) -> list[tuple[str, str, bool]]:
    app = deployment.app()
    try:
        with app.database.sessions() as session:
            return [
                (t.kind.value, t.status.value, t.permanent)
                for t in session.scalars(select(Task).order_by(Task.id))
            ]
    finally:
        app.close()


def _resume_planned(deployment: Deployment) -> Action:
    [email] = sandbox_users(1)
    deployment.set_users([email])
    _enqueue(deployment, _planned(deployment), shared=True)  # a pending provision
    resume = _planned(deployment)
    assert resume.kind is ActionKind.RESUME and resume.seen_task is not None
    return resume


def test_a_task_finished_since_the_plan_is_not_provisioned_again(deployment: Deployment) -> None:
    resume = _resume_planned(deployment)
    _another_instance(deployment, status=TaskStatus.DONE, next_step=None)
    assert _enqueue(deployment, resume, shared=True) == []
    assert _tasks(deployment) == [("provision", "done", False)]


def test_a_task_failed_permanently_since_the_plan_stays_failed(deployment: Deployment) -> None:
    resume = _resume_planned(deployment)
    _another_instance(
        deployment, status=TaskStatus.FAILED, permanent=True, attempts=1, last_error="403"
    )
    assert _enqueue(deployment, resume, shared=True) == []
    assert _tasks(deployment) == [("provision", "failed", True)]


def test_a_task_as_the_plan_saw_it_is_resumed(deployment: Deployment) -> None:
    resume = _resume_planned(deployment)
    assert len(_enqueue(deployment, resume, shared=True)) == 1
    assert _tasks(deployment) == [("provision", "pending", False)]
