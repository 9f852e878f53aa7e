"""kaclsData: a private key wrapped for the key access control list service (KACLS).

Gmail stores kaclsData opaquely and sends it back to the KACLS, which unwraps it to decrypt
or sign. The format is the one Cosmian KMS's ``google_cse`` endpoint unwraps: standard base64
of ``nonce (12 bytes) || AES-256-GCM ciphertext || tag (16 bytes)``, empty associated data,
over the DER private key in the format ``kacls.private_key_format`` names: a PKCS#1
RSAPrivateKey by default (Cosmian's privileged decrypt route, and its releases before 5.9 on
every route, parse only that), or PKCS#8 PrivateKeyInfo.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from syncd.config import KACLSConfig
from syncd.errors import ConfigError, KMSError
from syncd.kms.base import PrivateKeyFormat

NONCE_BYTES = 12
KEY_BYTES = 32
MAX_KACLS_DATA = 8 * 1024  # Gmail's limit on kaclsData


def _decodings(text: bytes) -> list[bytes]:
    decoded = []
    with contextlib.suppress(binascii.Error):
        decoded.append(base64.b64decode(text, validate=True))
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        decoded.append(bytes.fromhex(text.decode("ascii")))
    return decoded


def parse_aes256_key(material: bytes, where: str) -> bytes:
    """An AES-256 key from 32 raw bytes, or from text holding their base64 or hex."""
    if len(material) == KEY_BYTES:
        return material
    for key in _decodings(material.strip()):
        if len(key) == KEY_BYTES:
            return key
    raise ConfigError(where, "not an AES-256 key: expected 32 raw bytes, or their base64 or hex")


def load_wrapping_key(config: KACLSConfig) -> bytes:
    """The KACLS wrapping key named by ``kacls.wrapping_key[_file|_env]``."""
    ref = config.wrapping_key
    if ref is None:
        raise ConfigError(
            "kacls.wrapping_key_file", "required: the AES-256 key the KACLS unwraps kaclsData with"
        )
    return parse_aes256_key(ref.read("kacls"), ref.origin("kacls"))


def kacls_private_key(pkcs8_der: bytes, key_format: PrivateKeyFormat) -> bytes:
    """The DER private key the KACLS gets, in ``key_format``, from a PKCS#8 DER key.

    PKCS#1 exists for RSA keys only: any other key is refused (the KACLS decrypts and signs
    with RSA only).
    """
    if key_format == "pkcs8":
        return pkcs8_der
    if key_format != "pkcs1":
        raise KMSError(f"unknown private key format {key_format!r}; use pkcs1 or pkcs8")
    # The key was sealed by syncd's own KMS: skip the RSA consistency check (costly, and the
    # blob is authenticated).
    key = serialization.load_der_private_key(
        pkcs8_der, password=None, unsafe_skip_rsa_key_validation=True
    )
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KMSError(
            f"a {type(key).__name__} cannot be written as PKCS#1 (RSA only); "
            "the KACLS decrypts and signs with RSA keys only"
        )
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def wrap_private_key(der: bytes, wrapping_key: bytes) -> str:
    """kaclsData for a DER private key (already in the format the KACLS expects)."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = nonce + AESGCM(wrapping_key).encrypt(nonce, der, None)
    data = base64.b64encode(sealed).decode("ascii")
    if len(data) > MAX_KACLS_DATA:
        raise KMSError(f"wrapped private key is {len(data)} bytes; Gmail accepts at most 8 KiB")
    return data


def unwrap_private_key(kacls_data: str, wrapping_key: bytes) -> bytes:
    """The DER private key inside kaclsData, as the KACLS recovers it."""
    try:
        sealed = base64.b64decode(kacls_data, validate=True)
    except binascii.Error:
        raise KMSError("kaclsData is not valid base64") from None
    nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
    try:
        return AESGCM(wrapping_key).decrypt(nonce, ciphertext, None)
    except InvalidTag:
        raise KMSError("kaclsData does not decrypt with this wrapping key") from None
