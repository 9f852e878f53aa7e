"""The few DER operations certificate assembly needs: split a SEQUENCE, wrap a TLV.

Only definite lengths (as DER requires) are handled; anything else is a CertificateError.
"""

from __future__ import annotations

from syncd.errors import CertificateError

INTEGER = 0x02
SEQUENCE = 0x30
BIT_STRING = 0x03


def encode_length(length: int) -> bytes:
    """A DER length: short form below 128, else 0x80|n followed by n big-endian bytes."""
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def encode(tag: int, content: bytes) -> bytes:
    """One DER element with a single-byte tag."""
    return bytes([tag]) + encode_length(len(content)) + content


def _element_end(data: bytes, offset: int) -> tuple[int, int]:
    """(start of content, end of element) of the element starting at ``offset``."""
    if offset + 2 > len(data):
        raise CertificateError("truncated DER element")
    first = data[offset + 1]
    start = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or start + count > len(data):
            raise CertificateError("indefinite or truncated DER length")
        length = int.from_bytes(data[start:start + count], "big")
        start += count
    end = start + length
    if end > len(data):
        raise CertificateError("DER element runs past the end of the data")
    return start, end


def sequence_items(data: bytes) -> list[bytes]:
    """The encoded elements inside the SEQUENCE that is the whole of ``data``."""
    if not data or data[0] != SEQUENCE:
        raise CertificateError("not a DER SEQUENCE")
    start, end = _element_end(data, 0)
    if end != len(data):
        raise CertificateError("trailing bytes after the DER SEQUENCE")
    items = []
    offset = start
    while offset < end:
        _, item_end = _element_end(data, offset)
        items.append(data[offset:item_end])
        offset = item_end
    return items


def certificate(tbs: bytes, algorithm: bytes, signature: bytes) -> bytes:
    """Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }."""
    return encode(SEQUENCE, tbs + algorithm + encode(BIT_STRING, b"\x00" + signature))
