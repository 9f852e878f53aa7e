"""create_key skips the KMS lookup for a generation this pass's plan made (Work.fresh_key) only
on the task's first claim. In a shared group another instance may claim the task first, store
the key and be killed before recording it: the planner's runner, taking the task over, must
find that key by its label, not make a second one."""

from __future__ import annotations

from sqlalchemy import select

from syncd.pipeline.runner import Runner
from syncd.state.models import KmsKey, Task

from .conftest import Deployment, sandbox_users


def _user_key_labels(deployment: Deployment) -> list[str]:
    app = deployment.app()
    try:
        with app.database.sessions() as session:
            return list(
                session.scalars(select(KmsKey.label).where(KmsKey.label.like("syncd:%"))).all()
            )
    finally:
        app.close()


def test_a_taken_over_fresh_task_finds_the_key_the_first_claimant_made(
    deployment: Deployment,
) -> None:
    [email] = sandbox_users(1)
    deployment.set_users([email])
    # The first claimant stores the user's key and is killed before create_key is recorded.
    crashed = deployment.syncd("sync", "--once", crash_at="after:create_key")
    assert crashed.returncode != 0
    [label] = _user_key_labels(deployment)

    # The runner of the pass whose plan made the generation still counts it as fresh.
    app = deployment.app()
    try:
        with app.database.sessions() as session:
            [task_id] = session.scalars(select(Task.id)).all()
        ctx = app.pass_context()
        with ctx.run_lock() as fence:
            runner = Runner(
                app.database,
                ctx.services(),
                ctx.settings,
                None,
                fence=fence,
                fresh_keys={task_id},
            )
            [result] = runner.run([task_id])
    finally:
        app.close()
    assert result.ok, result.error
    assert _user_key_labels(deployment) == [label]
