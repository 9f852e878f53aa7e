"""The user's aliases in a new credential (``certificate.include_aliases``, issue 15 item 8).

:func:`certificate_aliases` is what the certificate issued now carries: the aliases of the last
directory read, sorted, exactly as the key pair's profile record lists them (``aliases``), and
none when ``certificate.include_aliases`` is off, whatever the directory says. An alias added or
removed in the directory makes the recorded profile differ from the desired one: the
configuration-drift rule re-issues the credential (``config_changed``).

:func:`insert_alias_identities`, the step after ``insert_identity``, asks Gmail for one CSE
identity per alias, pointing at the new key pair. Gmail takes an identity only for the user's
primary address, so in practice it refuses each alias: the refusal is recorded with the key
pair (``key_pairs.alias_identities``: ``{alias: "inserted" | "refused: <Gmail's message>"}``),
audited once with the step and logged in one line, and the task carries on. The step runs once
per credential made (provision, renewal, replacement, rename): an alias is asked for again only
with the user's next credential, never every pass. A transient failure (429, 5xx, no answer)
is raised for the runner to retry like any other step's.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, cast

from syncd.google.errors import GoogleAPIError
from syncd.pipeline.steps.base import Outcome, Services, StepError, Work, target_of

log = logging.getLogger("syncd.pipeline")

INSERTED = "inserted"
REFUSED = "refused: "


class AliasIdentities(Protocol):
    """The identity calls of syncd.google.gmail.GmailCSE for an address other than the
    mailbox's own (``email``)."""

    def create_identity(
        self, user: str, key_pair_id: str, *, email: str | None = None
    ) -> dict[str, Any]: ...
    def patch_identity(
        self, user: str, key_pair_id: str, *, email: str | None = None
    ) -> dict[str, Any]: ...


def certificate_aliases(work: Work, services: Services) -> tuple[str, ...]:
    """The aliases a certificate issued now for ``work``'s user carries: those its profile
    record lists (sorted; none unless ``certificate.include_aliases``)."""
    recorded = services.desired.record(work.aliases)["aliases"]
    assert isinstance(recorded, list)
    return tuple(str(alias) for alias in recorded)


def _refused(error: GoogleAPIError) -> str | None:
    """Gmail's refusal as recorded (``refused: <message>``); None when the failure is
    transient (raised again for the runner to retry)."""
    if error.retryable or error.later or error.status is None:
        return None
    message = error.google_message or str(error)
    return f"{REFUSED}{message}"[:500]


def insert_alias(gmail: AliasIdentities, user: str, alias: str, key_pair_id: str) -> str:
    """One alias's identity pointed at ``key_pair_id``: ``inserted`` or ``refused: ...``."""
    try:
        try:
            gmail.create_identity(user, key_pair_id, email=alias)
        except GoogleAPIError as error:
            if error.status != 409:
                raise
            # the alias has an identity pointing at an earlier key pair: point it here
            gmail.patch_identity(user, key_pair_id, email=alias)
    except GoogleAPIError as error:
        refusal = _refused(error)
        if refusal is None:
            raise
        return refusal
    return INSERTED


def insert_alias_identities(work: Work, services: Services) -> Outcome:
    """An identity for each alias the new certificate carries; each refusal recorded once."""
    aliases = certificate_aliases(work, services)
    if not aliases:
        return Outcome()
    target = target_of(work)
    if not target.gmail_key_pair_id:
        raise StepError(f"{work.email}: no Gmail key pair recorded before insert_alias_identities")
    # GmailCSE takes ``email`` (the identity's address); the steps' GmailKeyPairs omits it
    gmail = cast(AliasIdentities, services.gmail)
    results = {
        alias: insert_alias(gmail, work.email, alias, target.gmail_key_pair_id) for alias in aliases
    }
    refused = {alias: result for alias, result in results.items() if result != INSERTED}
    if refused:
        log.warning(
            "%s: Gmail refused a CSE identity for %d alias(es) (%s): %s; recorded with the key "
            "pair, asked again only with the next credential",
            work.email,
            len(refused),
            ", ".join(refused),
            "; ".join(sorted({r.removeprefix(REFUSED) for r in refused.values()})),
        )
    outcome = Outcome(audit={"alias_identities": results, "key_pair_id": target.gmail_key_pair_id})
    return outcome.update(target.id, alias_identities=results)
