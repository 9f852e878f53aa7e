"""A rename's last step: the identity of the address before the rename deleted (its key pair
stays enabled so old mail stays readable).

By then the rename's make steps have built a credential for the new address (a certificate
binds one address) and pointed the new address's identity at it; the generation that was
active is superseded, not disabled. The old identity lives in the same mailbox (Google keeps
the old address as an alias of the renamed user), so it is deleted through the new address
with the old one in the path: Gmail lets an identity whose address is no longer the user's
primary be read and deleted, though no longer created or changed.
"""

from __future__ import annotations

from syncd.google.errors import GoogleAPIError
from syncd.pipeline.steps.base import (
    UNAVAILABLE,
    Outcome,
    Services,
    Work,
    mailbox_unavailable,
    not_found,
)


def delete_previous_identity(work: Work, services: Services) -> Outcome:
    """Delete the identity of ``work.previous_email`` in the user's mailbox; already gone (or
    never made) is done, and so is a mailbox Gmail refuses (suspended, no mail service).

    Kept when the old address is still one of the user's aliases and aliases get identities
    of their own (``certificate.include_aliases``): it is then the alias's identity, on the
    new key pair.
    """
    previous = work.previous_email
    if previous is not None and services.desired.include_aliases and previous in work.aliases:
        return Outcome()
    return delete_identity_at(work, services, previous)


def delete_identity_at(work: Work, services: Services, address: str | None) -> Outcome:
    """Delete the identity of ``address`` (not the user's address) in the user's mailbox."""
    if address is None or address == work.email:
        return Outcome()
    try:
        services.gmail.delete_identity(work.email, email=address)
    except GoogleAPIError as error:
        if not_found(error):
            return Outcome()
        if mailbox_unavailable(error):
            return Outcome(audit={**UNAVAILABLE, "previous_email": address})
        raise
    return Outcome(audit={"previous_email": address})
