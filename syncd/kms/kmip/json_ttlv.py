"""Cosmian KMS's operations in JSON TTLV: the requests syncd sends and readers for the answers
(the codec itself, :class:`Item` and its constructors, is json_codec.py).

Two generations of the server differ in a few shapes (read in Cosmian/kms, ``crate/kmip``);
:class:`Dialect` holds them, chosen from the version ``GET /version`` reports:

- tags: 4.x a vendor attribute ``VendorAttributes`` > ``VendorAttributes`` whose value is a
  ByteString of the JSON list; 5.x one ``Attribute`` structure per vendor attribute, the tag
  list as a TextString (a 5.x server ignores tags sent the 4.x way);
- arrays (Links, vendor attributes): 4.x nests the items in one structure of the same tag,
  5.x's serializer repeats the item (``crate/kmip/src/ttlv/kmip_ttlv_serializer.rs``);
- Revoke's reason: 4.x a TextString, 5.x a structure with a RevocationReasonCode;
- a private key wrapped with no encoding: up to 5.8 its default format for RSA, PKCS#1, from
  5.9 PKCS#8 (``crate/crypto/src/crypto/wrap/wrap_key.rs``); every release refuses a Get that
  names a key format together with a wrapping specification
  (``crate/server/src/core/operations/export_get.rs``);
- Sign: 5.x only (4.x answers 404 "Route not supported: Operation: Sign").

Everything here is pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.x509.oid import NameOID

from syncd.kms.base import HashName, PrivateKeyFormat
from syncd.kms.kmip.json_codec import (
    Item,
    TtlvError,
    boolean,
    byte_string,
    date_time,
    enum,
    integer,
    struct,
    text,
)

VENDOR = "cosmian"
SYSTEM_TAG_PRIVATE = "_sk"
SYSTEM_TAG_PUBLIC = "_pk"
SYSTEM_TAG_CERTIFICATE = "_cert"

# CryptographicUsageMask bits (KMIP 2.1, 11.19).
SIGN, VERIFY, ENCRYPT, DECRYPT = 0x1, 0x2, 0x4, 0x8
WRAP_KEY, UNWRAP_KEY, DERIVE_KEY, KEY_AGREEMENT = 0x10, 0x20, 0x200, 0x800
# The masks Cosmian's own CLI gives RSA key pairs (crate/kmip/src/kmip_2_1/extra/fips.rs).
RSA_PRIVATE_MASK = SIGN | DECRYPT | UNWRAP_KEY | DERIVE_KEY | KEY_AGREEMENT
RSA_PUBLIC_MASK = VERIFY | ENCRYPT | WRAP_KEY | DERIVE_KEY | KEY_AGREEMENT


# --- server generations ------------------------------------------------------------------------


@dataclass(frozen=True)
class Dialect:
    """What differs between Cosmian KMS generations (see the module docstring)."""

    version: tuple[int, int, int] = (5, 0, 0)

    @property
    def v4(self) -> bool:
        return self.version < (5, 0, 0)

    @property
    def has_sign(self) -> bool:
        return not self.v4

    def wrapped_format(self) -> PrivateKeyFormat:
        """The format of a private key the server wraps (Get with a key wrapping
        specification, no encoding): it cannot be chosen."""
        return "pkcs8" if self.version >= (5, 9, 0) else "pkcs1"


V4 = Dialect((4, 24, 0))
V5 = Dialect((5, 20, 0))


def parse_version(answer: str) -> Dialect | None:
    """The dialect of the server whose ``GET /version`` answered ``answer``
    (``"5.20.0 (OpenSSL 3.1.2 1 Aug 2023-FIPS)"``); None when it names no version."""
    found = re.match(r"\s*\"?(\d+)\.(\d+)\.(\d+)", answer)
    if found is None:
        return None
    major, minor, patch = (int(part) for part in found.groups())
    return Dialect((major, minor, patch))


# --- vendor attributes and tags -----------------------------------------------------------------


def tags_json(tags: Iterable[str]) -> str:
    """Cosmian's serialisation of a tag set: a compact JSON list."""
    return json.dumps(list(tags), separators=(",", ":"))


def vendor_attributes(dialect: Dialect, attributes: list[tuple[str, Item]]) -> list[Item]:
    """Vendor attributes ``(name, value item)`` as the dialect nests them inside Attributes."""
    def one(tag: str, name: str, value: Item) -> Item:
        return struct(tag, text("VendorIdentification", VENDOR), text("AttributeName", name),
                      Item("AttributeValue", value.kind, value.value))

    if dialect.v4:
        if not attributes:
            return []
        return [struct("VendorAttributes",
                       *(one("VendorAttributes", name, value) for name, value in attributes))]
    return [one("Attribute", name, value) for name, value in attributes]


def tag_attribute(dialect: Dialect, tags: Iterable[str]) -> tuple[str, Item]:
    listed = tags_json(tags)
    if dialect.v4:
        return ("tag", byte_string("AttributeValue", listed.encode()))
    return ("tag", text("AttributeValue", listed))


def read_vendor_attributes(attributes: Item) -> dict[str, Item]:
    """The ``cosmian`` vendor attributes of an Attributes structure, by name, in either
    nesting."""
    found: dict[str, Item] = {}
    candidates = list(attributes.children("Attribute"))
    for outer in attributes.children("VendorAttributes"):
        inner = outer.children("VendorAttributes")
        candidates += inner if inner else [outer]
    for candidate in candidates:
        if candidate.kind != "Structure" or candidate.child("VendorIdentification") is None:
            continue
        if candidate.text("VendorIdentification") != VENDOR:
            continue
        found[candidate.text("AttributeName")] = candidate.need("AttributeValue")
    return found


def read_tags(attributes: Item) -> list[str]:
    """The tags of an Attributes structure (either dialect); [] when it has none."""
    value = read_vendor_attributes(attributes).get("tag")
    if value is None:
        return []
    raw = value.value.decode() if isinstance(value.value, bytes) else str(value.value)
    try:
        tags = json.loads(raw)
    except json.JSONDecodeError:
        raise TtlvError(f"tag attribute {raw!r} is not a JSON list") from None
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise TtlvError(f"tag attribute {raw!r} is not a JSON list of strings")
    return tags


def links(dialect: Dialect, targets: list[tuple[str, str]]) -> list[Item]:
    """Link attributes ``(link type, linked id)``: 4.x nests them in one ``Link`` structure,
    5.x repeats ``Link`` (its serializer flattens every array)."""
    items = [struct("Link", enum("LinkType", link_type), text("LinkedObjectIdentifier", uid))
             for link_type, uid in targets]
    if dialect.v4 and items:
        return [struct("Link", *items)]
    return items


# --- requests ----------------------------------------------------------------------------------


def _rsa_attributes(tag: str, bits: int, mask: int, activation: dt.datetime,
                    extra: list[Item]) -> Item:
    return struct(
        tag,
        enum("CryptographicAlgorithm", "RSA"),
        integer("CryptographicLength", bits),
        integer("CryptographicUsageMask", mask),
        enum("KeyFormatType", "TransparentRSAPrivateKey"),
        enum("ObjectType", "PrivateKey"),
        date_time("ActivationDate", activation),
        *extra,
    )


def create_key_pair(dialect: Dialect, label: str, bits: int, activation: dt.datetime) -> Item:
    """CreateKeyPair of an RSA pair tagged ``label``, active from ``activation`` (now): the
    request Cosmian's CLI builds (``create_rsa_key_pair_request``)."""
    tags = vendor_attributes(dialect, [tag_attribute(dialect, [label])])
    return struct(
        "CreateKeyPair",
        _rsa_attributes("CommonAttributes", bits, RSA_PRIVATE_MASK | RSA_PUBLIC_MASK,
                        activation, tags),
        _rsa_attributes("PrivateKeyAttributes", bits, RSA_PRIVATE_MASK, activation, []),
        _rsa_attributes("PublicKeyAttributes", bits, RSA_PUBLIC_MASK, activation, []),
    )


def import_key(dialect: Dialect, label: str, object_type: Literal["PrivateKey", "PublicKey"],
               der: bytes, activation: dt.datetime, public_key_id: str | None = None) -> Item:
    """Import of a PKCS#8 private key or a SubjectPublicKeyInfo public key (both key format
    PKCS8 in Cosmian's terms), tagged ``label``, active from ``activation``; a private key can
    name its public key (PublicKeyLink)."""
    linked = [("PublicKeyLink", public_key_id)] if public_key_id is not None else []
    return struct(
        "Import",
        text("UniqueIdentifier", ""),
        enum("ObjectType", object_type),
        boolean("ReplaceExisting", False),
        struct("Attributes", date_time("ActivationDate", activation),
               *links(dialect, linked), enum("ObjectType", object_type),
               *vendor_attributes(dialect, [tag_attribute(dialect, [label])])),
        struct("Object", struct(
            "KeyBlock",
            enum("KeyFormatType", "PKCS8"),
            struct("KeyValue", byte_string("KeyMaterial", der)),
        )),
    )


KEY_FORMATS = {"pkcs1": "PKCS1", "pkcs8": "PKCS8", "spki": "PKCS8", "x509": "X509"}


def get(uid: str, key_format: str | None = None) -> Item:
    """Get of ``uid``, as registered or in ``key_format`` (pkcs1, pkcs8, spki, x509)."""
    return struct(
        "Get",
        text("UniqueIdentifier", uid),
        enum("KeyFormatType", KEY_FORMATS[key_format]) if key_format else None,
        enum("KeyWrapType", "AsRegistered"),
    )


def get_wrapped(uid: str, wrapping_key_id: str) -> Item:
    """Get of a private key wrapped by the KMS with the AES key ``wrapping_key_id`` in GCM,
    no encoding: Cosmian's ``google key-pairs create`` export (``get_request`` with
    ``key_wrapping_specification``); the answer's key value is nonce || ciphertext || tag over
    the key in :meth:`Dialect.wrapped_format` (no key format may be asked for)."""
    return struct(
        "Get",
        text("UniqueIdentifier", uid),
        struct(
            "KeyWrappingSpecification",
            enum("WrappingMethod", "Encrypt"),
            struct("EncryptionKeyInformation",
                   text("UniqueIdentifier", wrapping_key_id),
                   struct("CryptographicParameters",
                          enum("BlockCipherMode", "GCM"),
                          enum("CryptographicAlgorithm", "AES"))),
            enum("EncodingOption", "NoEncoding"),
        ),
    )


def get_attributes(uid: str) -> Item:
    return struct("GetAttributes", text("UniqueIdentifier", uid))


def locate(dialect: Dialect, tags: list[str]) -> Item:
    """Locate of the objects carrying every one of ``tags``."""
    return struct("Locate", struct("Attributes",
                                   *vendor_attributes(dialect, [tag_attribute(dialect, tags)])))


_SIGNATURE_ALGORITHMS: dict[HashName, str] = {
    "sha256": "SHA256WithRSAEncryption",
    "sha384": "SHA384WithRSAEncryption",
    "sha512": "SHA512WithRSAEncryption",
}


def sign(uid: str, data: bytes, hash_name: HashName) -> Item:
    """Sign (RSA PKCS#1 v1.5 with ``hash_name``) of ``data`` in one shot."""
    return struct(
        "Sign",
        text("UniqueIdentifier", uid),
        struct("CryptographicParameters",
               enum("DigitalSignatureAlgorithm", _SIGNATURE_ALGORITHMS[hash_name])),
        byte_string("Data", data),
        boolean("InitIndicator", True),
        boolean("FinalIndicator", True),
    )


SUBJECT_FIELDS = ("Cn", "O", "Ou", "Email", "C", "St", "L", "Uid", "SerialNumber", "Title",
                  "Dc", "DnQualifier")
"""Cosmian's CertificateAttributes, in its order: CertificateSubject<X> and
CertificateIssuer<X> for each."""


_SUBJECT_OIDS = {
    NameOID.COMMON_NAME: "Cn", NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "Ou", NameOID.EMAIL_ADDRESS: "Email",
    NameOID.COUNTRY_NAME: "C", NameOID.STATE_OR_PROVINCE_NAME: "St",
    NameOID.LOCALITY_NAME: "L", NameOID.USER_ID: "Uid", NameOID.SERIAL_NUMBER: "SerialNumber",
    NameOID.TITLE: "Title", NameOID.DOMAIN_COMPONENT: "Dc", NameOID.DN_QUALIFIER: "DnQualifier",
}


def subject_fields(subject: str) -> dict[str, str]:
    """Cosmian's CertificateAttributes for an RFC 4514 subject: one value per field among
    SUBJECT_FIELDS (Cosmian orders the fields itself)."""
    try:
        name = x509.Name.from_rfc4514_string(subject)
    except ValueError as exc:
        raise TtlvError(f"subject {subject!r} is not an RFC 4514 name ({exc})") from None
    fields: dict[str, str] = {}
    for attribute in name:
        field = _SUBJECT_OIDS.get(attribute.oid)
        if field is None:
            raise TtlvError(f"subject attribute {attribute.rfc4514_string()!r} has no Cosmian "
                            "CertificateAttributes field")
        if field in fields:
            raise TtlvError(f"subject has {field.upper()} twice; Cosmian takes one of each")
        fields[field] = str(attribute.value)
    return fields


def certify(dialect: Dialect, public_key_id: str, issuer_private_key_id: str,
            issuer_certificate_id: str | None, subject: dict[str, str],
            extensions_conf: str, validity_days: int, label: str) -> Item:
    """Certify of a public key by the issuer's private key, with the subject as Cosmian's
    CertificateAttributes (``subject``: field name from SUBJECT_FIELDS -> value), the
    extensions file in the ``x509-extension`` vendor attribute, the validity in
    ``requested_validity_days`` and the certificate tagged ``label``."""
    unknown = set(subject) - set(SUBJECT_FIELDS)
    if unknown:
        raise TtlvError(f"subject fields {sorted(unknown)} are not Cosmian CertificateAttributes")
    certificate_attributes = struct(
        "CertificateAttributes",
        *(text(f"CertificateSubject{name}", subject.get(name, "")) for name in SUBJECT_FIELDS),
        *(text(f"CertificateIssuer{name}", "") for name in SUBJECT_FIELDS),
    )
    linked = [("PrivateKeyLink", issuer_private_key_id)]
    if issuer_certificate_id is not None:
        linked.append(("CertificateLink", issuer_certificate_id))
    days = (byte_string("AttributeValue", str(validity_days).encode()) if dialect.v4
            else integer("AttributeValue", validity_days))
    vendor = vendor_attributes(dialect, [
        ("requested_validity_days", days),
        ("x509-extension", byte_string("AttributeValue", extensions_conf.encode())),
        tag_attribute(dialect, [label]),
    ])
    return struct(
        "Certify",
        text("UniqueIdentifier", public_key_id),
        struct("Attributes", certificate_attributes, *links(dialect, linked),
               enum("ObjectType", "Certificate"), *vendor),
    )


def revoke(dialect: Dialect, uid: str, message: str) -> Item:
    """Revoke with reason cessation of operation (4.x: the message alone)."""
    if dialect.v4:
        reason = text("RevocationReason", message)
    else:
        reason = struct("RevocationReason",
                        enum("RevocationReasonCode", "CessationOfOperation"),
                        text("RevocationMessage", message))
    return struct("Revoke", text("UniqueIdentifier", uid), reason)


def destroy(uid: str) -> Item:
    """Destroy (KMIP semantics: the metadata stays; Cosmian's Remove flag is not set)."""
    return struct("Destroy", text("UniqueIdentifier", uid))


# --- responses ---------------------------------------------------------------------------------


def _expect(response: Item, tag: str) -> Item:
    if response.tag != tag or response.kind != "Structure":
        raise TtlvError(f"expected {tag}, got {response.tag}")
    return response


def read_unique_identifier(response: Item, tag: str) -> str:
    """The UniqueIdentifier of a CreateResponse, ImportResponse, CertifyResponse..."""
    return _expect(response, tag).text("UniqueIdentifier")


def read_key_pair(response: Item) -> tuple[str, str]:
    """(private key id, public key id) of a CreateKeyPairResponse."""
    body = _expect(response, "CreateKeyPairResponse")
    return body.text("PrivateKeyUniqueIdentifier"), body.text("PublicKeyUniqueIdentifier")


def read_locate(response: Item) -> list[str]:
    return [item.value for item in _expect(response, "LocateResponse").children("UniqueIdentifier")]


@dataclass(frozen=True)
class GotObject:
    """What a GetResponse holds: the object's type and id, and its bytes (key material,
    wrapped key, or certificate DER) with their format."""

    object_type: str
    unique_identifier: str
    key_format: str | None
    data: bytes
    wrapped: bool


def read_get(response: Item) -> GotObject:
    body = _expect(response, "GetResponse")
    object_type = body.text("ObjectType")
    uid = body.text("UniqueIdentifier")
    obj = body.need("Object")
    if object_type == "Certificate":
        return GotObject(object_type, uid, obj.text("CertificateType"),
                         obj.need("CertificateValue").value, False)
    block = obj.need("KeyBlock")
    value = block.need("KeyValue")
    wrapped = block.child("KeyWrappingData") is not None
    if value.kind == "ByteString":
        data = value.value
    else:
        material = value.need("KeyMaterial")
        if material.kind != "ByteString":
            raise TtlvError(f"GetResponse key material is a {material.kind}, not bytes; ask "
                            "for a key format such as PKCS8")
        data = material.value
    return GotObject(object_type, uid, block.text("KeyFormatType"), data, wrapped)


def read_signature(response: Item) -> bytes:
    value = _expect(response, "SignResponse").need("SignatureData").value
    if not isinstance(value, bytes):
        raise TtlvError("SignResponse SignatureData is not bytes")
    return value


@dataclass(frozen=True)
class ObjectAttributes:
    """The attributes syncd reads back: state, links by type, tags, creation date."""

    object_type: str | None
    state: str | None
    links: dict[str, str]
    tags: list[str]
    initial_date: dt.datetime | None


def read_links(attributes: Item) -> dict[str, str]:
    """The links of an Attributes structure, link type -> linked id (either dialect)."""
    found: dict[str, str] = {}
    for outer in attributes.children("Link"):
        for link in outer.children("Link") or [outer]:
            found[link.text("LinkType")] = link.text("LinkedObjectIdentifier")
    return found


def read_attributes(response: Item) -> ObjectAttributes:
    attributes = _expect(response, "GetAttributesResponse").need("Attributes")
    links = read_links(attributes)
    state = attributes.child("State")
    initial = attributes.child("InitialDate")
    object_type = attributes.child("ObjectType")
    return ObjectAttributes(
        object_type.value if object_type is not None else None,
        state.value if state is not None else None,
        links,
        read_tags(attributes),
        initial.value if initial is not None else None,
    )
