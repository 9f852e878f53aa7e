"""Which public key goes with which private key, when the server does not say.

KMIP links the two halves of a pair with Link attributes, but PyKMIP's server does not set
them and PyKMIP's client cannot read them (its attribute factory raises NotImplementedError
for Link). Both halves carry syncd's label and are made together: by one CreateKeyPair, or for
an import one Register (the public key) right before the other (the private key). So each
private key, oldest first, takes the unused public key made closest to it: at or before it
rather than after, nearest in time, then nearest in id (PyKMIP's ids count up), then nearest
in order. A public key left alone by an interrupted import is then passed over.
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


def _number(uid: str) -> int:
    return int(uid) if uid.isdigit() else 0


def _closeness(
    private: KmipObject, public: KmipObject, order_gap: int
) -> tuple[bool, float, bool, int, int]:
    return (
        public.created > private.created,
        abs(private.created - public.created),
        _number(public.uid) > _number(private.uid),
        abs(_number(private.uid) - _number(public.uid)),
        abs(order_gap),
    )


def pair_halves(objects: list[KmipObject]) -> list[KmipPair]:
    """The key pairs among ``objects`` (all named after one label), oldest first, destroyed
    ones left out; a private key without a public key is paired with itself (its id is then
    used for both halves)."""
    privates = sorted((o for o in objects if o.kind == "private_key"), key=creation_order)
    publics = sorted((o for o in objects if o.kind == "public_key"), key=creation_order)
    unused = dict(enumerate(publics))
    pairs = []
    for position, private in enumerate(privates):
        public_id = private.uid
        if unused:
            index = min(unused, key=lambda i: _closeness(private, unused[i], position - i))
            public_id = unused.pop(index).uid
        if private.state not in GONE_STATES:
            pairs.append(KmipPair(private.uid, public_id, private.state))
    return pairs
