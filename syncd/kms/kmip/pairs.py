"""Which public key goes with which private key, when the server does not say.

KMIP links the two halves of a pair with Link attributes, but PyKMIP's server does not set
them and PyKMIP's client cannot read them (its attribute factory raises NotImplementedError
for Link). Both halves carry the same Name (syncd's label) and are made by one CreateKeyPair
(or, for an import, one Register after the other), so among the objects named ``label`` the
n-th private key made goes with the n-th public key made.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncd.kms.kmip.transport import KmipPair

GONE_STATES = frozenset({"destroyed", "destroyed_compromised"})


@dataclass(frozen=True)
class KmipObject:
    """One located object: its id, kind (``private_key`` / ``public_key``), state and age."""

    uid: str
    kind: str
    state: str
    created: float


def creation_order(obj: KmipObject) -> tuple[float, int, str]:
    """Oldest first; objects made in the same second by their id (numeric ids as numbers)."""
    numeric = int(obj.uid) if obj.uid.isdigit() else 0
    return (obj.created, numeric, obj.uid)


def pair_halves(objects: list[KmipObject]) -> list[KmipPair]:
    """The key pairs among ``objects`` (all named alike), oldest first, destroyed ones left
    out; a private key without a public key is paired with itself (its id is then used
    for both halves, as some servers allow)."""
    privates = sorted((o for o in objects if o.kind == "private_key"), key=creation_order)
    publics = sorted((o for o in objects if o.kind == "public_key"), key=creation_order)
    pairs = []
    for index, private in enumerate(privates):
        public_id = publics[index].uid if index < len(publics) else private.uid
        if private.state not in GONE_STATES:
            pairs.append(KmipPair(private.uid, public_id, private.state))
    return pairs
