"""Gmail ``users.settings.cse.keypairs`` and ``users.settings.cse.identities``: the eleven
methods, their paging, and Google's rules as lists of small checks.

Sandbox choices where Google's behaviour is not documented: uploading a certificate the user
already has (same leaf SHA-256) is refused with 409 ALREADY_EXISTS; a key pair used by an
identity cannot be obliterated; the leaf must name the user's address even with
``chainValidation=none``.

A call may name the mailbox by an alias (a renamed user's old address, see accounts.py). An
identity is created or patched only for the user's primary address, but one whose address is
no longer the primary (the identity of a renamed user's old address) can still be read and
deleted: ``identities.get`` and ``identities.delete`` take the address in the path.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

from syncd.sandbox.certs import UploadedChain, profile_violations, read_chain
from syncd.sandbox.clock import parse_rfc3339, rfc3339
from syncd.sandbox.context import NO_CONTENT, Call, Reply, Services
from syncd.sandbox.errors import (
    ApiError,
    already_exists,
    forbidden,
    invalid,
    not_found,
    precondition,
)
from syncd.sandbox.paging import page_size, paginate
from syncd.sandbox.store import DirectoryUser

OBLITERATE_AFTER = timedelta(days=30)
MAX_KACLS_DATA = 8 * 1024
PAGE_DEFAULT = 20
PAGE_MAX = 100
CHAIN_VALIDATIONS = ("all", "none")


def public(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record without the sandbox's own bookkeeping fields (leading underscore)."""
    return {k: v for k, v in record.items() if not k.startswith("_")}


def mail_user(services: Services, call: Call) -> DirectoryUser:
    """The mailbox the call acts on: ``userId`` must be the token's subject ("me" is)."""
    subject = call.grant.subject
    if subject is None:
        raise precondition("Precondition check failed.")
    user_id = call.params["userId"]
    if user_id != "me" and user_id.lower() != subject.lower():
        raise forbidden(f"Delegation denied for {subject}")
    user = services.store.directory().user(subject)
    if user is None or user.suspended or not user.isMailboxSetup:
        raise precondition("Mail service not enabled")
    return user


# --- key pair upload rules --------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    body: dict[str, Any]
    chain_validation: str
    user: DirectoryUser
    existing: list[dict[str, Any]]
    roots: list[x509.Certificate]
    now: datetime


def _needs_pkcs7(up: Upload) -> ApiError | None:
    pkcs7 = up.body.get("pkcs7")
    if not isinstance(pkcs7, str) or not pkcs7.strip():
        return invalid("pkcs7 is required: the certificate chain as PKCS#7 in PEM armour.")
    return None


def _known_chain_validation(up: Upload) -> ApiError | None:
    if up.chain_validation not in CHAIN_VALIDATIONS:
        return invalid(f"Invalid value for chainValidation: {up.chain_validation!r}.")
    return None


def _kacls_metadata(up: Upload) -> ApiError | None:
    entries = up.body.get("privateKeyMetadata")
    if not isinstance(entries, list) or not entries:
        return invalid("privateKeyMetadata is required (at least one kaclsKeyMetadata).")
    for entry in entries:
        kacls = entry.get("kaclsKeyMetadata") if isinstance(entry, dict) else None
        if not isinstance(kacls, dict):
            return invalid("privateKeyMetadata entries need kaclsKeyMetadata.")
        uri, data = kacls.get("kaclsUri"), kacls.get("kaclsData")
        if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
            return invalid("kaclsKeyMetadata.kaclsUri must be an http(s) URL.")
        if not isinstance(data, str) or not data:
            return invalid("kaclsKeyMetadata.kaclsData is required.")
        if len(data.encode()) > MAX_KACLS_DATA:
            return invalid(f"kaclsKeyMetadata.kaclsData is larger than {MAX_KACLS_DATA} bytes.")
    return None


UPLOAD_INPUT_RULES: list[Callable[[Upload], ApiError | None]] = [
    _needs_pkcs7,
    _known_chain_validation,
    _kacls_metadata,
]


def _leaf_names_user(up: Upload, chain: UploadedChain) -> ApiError | None:
    if up.user.primaryEmail.lower() not in (e.lower() for e in chain.emails):
        named = ", ".join(chain.emails) or "no email address"
        return invalid(f"The certificate is for {named}, not for the user {up.user.primaryEmail}.")
    return None


def _chain_and_profile(up: Upload, chain: UploadedChain) -> ApiError | None:
    if up.chain_validation == "none":
        return None
    violations = profile_violations(chain, up.user.primaryEmail, up.roots, up.now)
    if violations:
        return invalid("Certificate chain validation failed: " + "; ".join(violations))
    return None


def _not_uploaded_before(up: Upload, chain: UploadedChain) -> ApiError | None:
    for record in up.existing:
        if record["_fingerprint"] == chain.fingerprint:
            return already_exists(
                f"The user already has this certificate as key pair {record['keyPairId']}."
            )
    return None


UPLOAD_CHAIN_RULES: list[Callable[[Upload, UploadedChain], ApiError | None]] = [
    _chain_and_profile,  # names every broken rule, the user's address among them
    _leaf_names_user,  # also with chainValidation=none
    _not_uploaded_before,
]


def _raise_first(errors: Iterable[ApiError | None]) -> None:
    """Raise the first error; the iterable is lazy so later rules never see a failed input."""
    for error in errors:
        if error is not None:
            raise error


def _body(call: Call) -> dict[str, Any]:
    if not isinstance(call.body, dict):
        raise invalid("The request body must be a JSON object.")
    return call.body


def create_keypair(services: Services, call: Call) -> Reply:
    user = mail_user(services, call)
    now = services.clock.now()
    with services.store.user_state(user.primaryEmail) as state:
        up = Upload(
            body=_body(call),
            chain_validation=call.query.get("chainValidation", "all"),
            user=user,
            existing=state["keypairs"],
            roots=services.store.trusted_roots(),
            now=now,
        )
        _raise_first(rule(up) for rule in UPLOAD_INPUT_RULES)
        chain = read_chain(up.body["pkcs7"])
        _raise_first(rule(up, chain) for rule in UPLOAD_CHAIN_RULES)
        record = {
            "keyPairId": secrets.token_hex(16),
            "pem": chain.pem,
            "subjectEmailAddresses": chain.emails,
            "enablementState": "enabled",
            "privateKeyMetadata": [
                {
                    "privateKeyMetadataId": secrets.token_hex(8),
                    "kaclsKeyMetadata": dict(entry["kaclsKeyMetadata"]),
                }
                for entry in up.body["privateKeyMetadata"]
            ],
            "_fingerprint": chain.fingerprint,
            "_chainValidation": up.chain_validation,
            "_createTime": rfc3339(now),
        }
        state["keypairs"].append(record)
    return Reply(200, public(record))


def _find_keypair(state: dict[str, Any], key_pair_id: str) -> dict[str, Any]:
    for record in state["keypairs"]:
        if record["keyPairId"] == key_pair_id:
            return record  # type: ignore[no-any-return]
    raise not_found(f"Key pair {key_pair_id} not found.")


def get_keypair(services: Services, call: Call) -> Reply:
    user = mail_user(services, call)
    with services.store.user_state(user.primaryEmail) as state:
        return Reply(200, public(_find_keypair(state, call.params["keyPairId"])))


def list_keypairs(services: Services, call: Call) -> Reply:
    user = mail_user(services, call)
    size = page_size(
        call.query.get("pageSize"), default=PAGE_DEFAULT, maximum=PAGE_MAX, name="pageSize"
    )
    with services.store.user_state(user.primaryEmail) as state:
        records = [public(r) for r in state["keypairs"]]
    page, token = paginate(records, call.query.get("pageToken"), size, f"kp:{user.primaryEmail}")
    answer: dict[str, Any] = {"cseKeyPairs": page}
    if token:
        answer["nextPageToken"] = token
    return Reply(200, answer)


def disable_keypair(services: Services, call: Call) -> Reply:
    user = mail_user(services, call)
    with services.store.user_state(user.primaryEmail) as state:
        record = _find_keypair(state, call.params["keyPairId"])
        if record["enablementState"] != "disabled":
            record["enablementState"] = "disabled"
            record["disableTime"] = rfc3339(services.clock.now())
        return Reply(200, public(record))


def enable_keypair(services: Services, call: Call) -> Reply:
    user = mail_user(services, call)
    with services.store.user_state(user.primaryEmail) as state:
        record = _find_keypair(state, call.params["keyPairId"])
        record["enablementState"] = "enabled"
        record.pop("disableTime", None)
        return Reply(200, public(record))


def _identities_using(state: dict[str, Any], key_pair_id: str) -> list[str]:
    return [
        identity["emailAddress"]
        for identity in state["identities"]
        if key_pair_id in _referenced_ids(identity)
    ]


def obliterate_keypair(services: Services, call: Call) -> Reply:
    user = mail_user(services, call)
    now = services.clock.now()
    with services.store.user_state(user.primaryEmail) as state:
        record = _find_keypair(state, call.params["keyPairId"])
        if record["enablementState"] != "disabled":
            raise precondition(
                f"Key pair {record['keyPairId']} is enabled; disable it and wait 30 days "
                "before obliterating it."
            )
        allowed_from = parse_rfc3339(record["disableTime"]) + OBLITERATE_AFTER
        if now < allowed_from:
            raise precondition(
                f"Key pair {record['keyPairId']} was disabled at {record['disableTime']}; it "
                f"can be obliterated after {rfc3339(allowed_from)}."
            )
        users = _identities_using(state, record["keyPairId"])
        if users:
            raise precondition(
                f"Key pair {record['keyPairId']} is used by the identity {', '.join(users)}."
            )
        state["keypairs"].remove(record)
    return NO_CONTENT


# --- identity rules ---------------------------------------------------------------------


def _referenced_ids(identity: dict[str, Any]) -> list[str]:
    if identity.get("primaryKeyPairId"):
        return [identity["primaryKeyPairId"]]
    pairs = identity.get("signAndEncryptKeyPairs") or {}
    return [pairs[k] for k in ("signingKeyPairId", "encryptionKeyPairId") if pairs.get(k)]


@dataclass(frozen=True)
class IdentityRequest:
    identity: dict[str, Any]
    user: DirectoryUser
    keypairs: list[dict[str, Any]]


def _address_is_primary(req: IdentityRequest) -> ApiError | None:
    address = req.identity.get("emailAddress")
    if not isinstance(address, str) or address.lower() != req.user.primaryEmail.lower():
        return invalid(
            f"emailAddress must be the primary address of the user ({req.user.primaryEmail})."
        )
    return None


def _one_configuration(req: IdentityRequest) -> ApiError | None:
    primary = req.identity.get("primaryKeyPairId")
    pairs = req.identity.get("signAndEncryptKeyPairs")
    if bool(primary) == bool(pairs):
        return invalid("Give exactly one of primaryKeyPairId and signAndEncryptKeyPairs.")
    if pairs and not (
        isinstance(pairs, dict)
        and pairs.get("signingKeyPairId")
        and pairs.get("encryptionKeyPairId")
    ):
        return invalid("signAndEncryptKeyPairs needs signingKeyPairId and encryptionKeyPairId.")
    return None


def _keypair_usable(req: IdentityRequest, key_pair_id: str) -> ApiError | None:
    record = next((r for r in req.keypairs if r["keyPairId"] == key_pair_id), None)
    if record is None:
        return invalid(f"Key pair {key_pair_id} does not exist for {req.user.primaryEmail}.")
    if record["enablementState"] != "enabled":
        return precondition(f"Key pair {key_pair_id} is disabled.")
    if record["_chainValidation"] != "all":
        return precondition(
            f"Key pair {key_pair_id} was created without chain validation and cannot be "
            "used in an identity."
        )
    address = req.user.primaryEmail.lower()
    if address not in (e.lower() for e in record["subjectEmailAddresses"]):
        return invalid(f"Key pair {key_pair_id} is not for {req.user.primaryEmail}.")
    return None


def _keypairs_usable(req: IdentityRequest) -> ApiError | None:
    for key_pair_id in _referenced_ids(req.identity):
        error = _keypair_usable(req, key_pair_id)
        if error is not None:
            return error
    return None


IDENTITY_RULES: list[Callable[[IdentityRequest], ApiError | None]] = [
    _address_is_primary,
    _one_configuration,
    _keypairs_usable,
]


def _identity_view(identity: dict[str, Any]) -> dict[str, Any]:
    keys = ("emailAddress", "primaryKeyPairId", "signAndEncryptKeyPairs")
    return {k: identity[k] for k in keys if identity.get(k)}


def _find_identity(state: dict[str, Any], address: str) -> dict[str, Any]:
    for identity in state["identities"]:
        if identity["emailAddress"].lower() == address.lower():
            return identity  # type: ignore[no-any-return]
    raise not_found(f"Identity {address} not found.")


def create_identity(services: Services, call: Call) -> Reply:
    user = mail_user(services, call)
    identity = _identity_view(_body(call))
    with services.store.user_state(user.primaryEmail) as state:
        req = IdentityRequest(identity, user, state["keypairs"])
        _raise_first(rule(req) for rule in IDENTITY_RULES)
        if any(i["emailAddress"].lower() == user.primaryEmail.lower() for i in state["identities"]):
            raise already_exists(f"Identity {user.primaryEmail} already exists.")
        state["identities"].append(identity)
    return Reply(200, identity)


def patch_identity(services: Services, call: Call) -> Reply:
    user = mail_user(services, call)
    address = call.params["emailAddress"]
    changes = _identity_view(_body(call))
    if "emailAddress" in changes and changes["emailAddress"].lower() != address.lower():
        raise invalid("The emailAddress in the body must match the one in the path.")
    with services.store.user_state(user.primaryEmail) as state:
        current = _find_identity(state, address)
        updated = {"emailAddress": current["emailAddress"]}
        configured = changes if _referenced_ids(changes) else current
        for key in ("primaryKeyPairId", "signAndEncryptKeyPairs"):
            if configured.get(key):
                updated[key] = configured[key]
        req = IdentityRequest(updated, user, state["keypairs"])
        _raise_first(rule(req) for rule in IDENTITY_RULES)
        current.clear()
        current.update(updated)
    return Reply(200, updated)


def get_identity(services: Services, call: Call) -> Reply:
    user = mail_user(services, call)
    with services.store.user_state(user.primaryEmail) as state:
        return Reply(200, _find_identity(state, call.params["cseEmailAddress"]))


def delete_identity(services: Services, call: Call) -> Reply:
    user = mail_user(services, call)
    with services.store.user_state(user.primaryEmail) as state:
        state["identities"].remove(_find_identity(state, call.params["cseEmailAddress"]))
    return NO_CONTENT


def list_identities(services: Services, call: Call) -> Reply:
    user = mail_user(services, call)
    size = page_size(
        call.query.get("pageSize"), default=PAGE_DEFAULT, maximum=PAGE_MAX, name="pageSize"
    )
    with services.store.user_state(user.primaryEmail) as state:
        records = list(state["identities"])
    page, token = paginate(records, call.query.get("pageToken"), size, f"id:{user.primaryEmail}")
    answer: dict[str, Any] = {"cseIdentities": page}
    if token:
        answer["nextPageToken"] = token
    return Reply(200, answer)
