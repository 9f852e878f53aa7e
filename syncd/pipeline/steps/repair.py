"""The repair steps (syncd resync, drift): the active key pair present and enabled in Gmail."""

from __future__ import annotations

from dataclasses import replace

from syncd.google.errors import GoogleAPIError
from syncd.pipeline.steps.base import (
    Outcome,
    Services,
    Work,
    not_found,
    target_of,
)
from syncd.pipeline.steps.provision import upload_keypair


def repair_keypair(work: Work, services: Services) -> Outcome:
    """The active generation's key pair must exist in Gmail and be enabled; re-upload if gone."""
    target = target_of(work)
    if not target.gmail_key_pair_id:
        return upload_keypair(work, services)
    try:
        keypair = services.gmail.get_keypair(work.email, target.gmail_key_pair_id)
    except GoogleAPIError as error:
        if not not_found(error):
            raise
        missing = replace(work, target=replace(target, gmail_key_pair_id=None))
        uploaded = upload_keypair(missing, services)
        uploaded.audit = {**(uploaded.audit or {}), "was_missing": True}
        return uploaded
    if keypair.get("enablementState") == "disabled":
        services.gmail.enable_keypair(work.email, target.gmail_key_pair_id)
        return Outcome(audit={"key_pair_id": target.gmail_key_pair_id, "re_enabled": True})
    return Outcome()
