#!/usr/bin/env python3
"""Independent verifier for tfx audit bundles.

Written from protocol/SPEC.md alone, without reading the Rust implementation:
§1 conventions, §2 CBOR profile, §3 keys and key ids, §4.2-§4.3 fields and value rules,
§5 disclosures and digests, §6 record header, envelope, Sig_structure and verification order,
§8 Merkle hashing and RFC 9162 proofs, §9 checkpoints, §10 limits, §13 roster, §17 witness
cosignatures, §18 equivocation evidence and §19 audit bundles.

    python3 tools/verify_bundle.py FILE [--genesis HEX] [--json]

Prints one line per check ("ok" or "FAILED", what, detail) and a final "VERIFIED" or "FAILED"
(or, with --json, the object of §19.3). Exit status: 0 when every check held, 1 when any
failed, 2 when the file cannot be read or is not a COSE_Sign1 at all. Disclosed field values
are never printed, only field names.

Dependencies: pycose (every COSE_Sign1 signature check goes through its Sign1Message),
cbor2 (used by pycose; pycose 1.1 needs cbor2 < 6 for its own decoding, which this script avoids
by handing pycose the already-checked parts), cryptography (Ed25519 for the roster's COSE_Sign
signatures, which pycose does not model conveniently).

Every CBOR document is first checked against the §2 profile by the decoder below (shortest
heads, definite lengths, no floats, at most 16 map entries, unique integer/text keys, depth and
item limits) and never re-encoded: hashes and signatures cover the bytes as received.
"""

import argparse
import datetime
import hashlib
import json
import os
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Optional

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from pycose import algorithms as cose_algorithms
    from pycose.keys import OKPKey
    from pycose.keys.curves import Ed25519
    from pycose.messages import Sign1Message
except ImportError as missing:
    print(f"FAILED verify_bundle.py needs pycose and cbor2 (pip install pycose cbor2): {missing}",
          file=sys.stderr)
    sys.exit(2)

# ---------------------------------------------------------------------------------------------
# Limits (§2.1, §10, §17, §18, §19)
# ---------------------------------------------------------------------------------------------

CBOR_DEPTH_MAX = 8
CBOR_ITEMS_MAX = 256
CBOR_MAP_ENTRIES_MAX = 16
ENVELOPE_BYTES_MAX = 4096
DISCLOSURE_BYTES_MAX = 8192
DISCLOSURES_PER_RECORD_MAX = 32
CHECKPOINT_BYTES_MAX = 512
COSIGNATURE_BYTES_MAX = 512  # §17 "(at most 512 bytes)"
COSIGNATURES_MAX = 256  # §17.1, §19.2
TEXT_CHARS_MAX = 200
LIST_ITEMS_MAX = 64
MEMBER_ID_BYTES_MAX = 64
LEVELS_MAX = 64  # a uint size has at most 64 bits, so a proof or frontier has at most 64 hashes
ROSTER_BYTES_MAX = 262_144
ROSTER_ITEMS_MAX = 19_712
ROSTER_MEMBERS_MAX = 256
ROSTER_GOVERNORS_MAX = 16
MEMBER_KEYS_MAX = 8
MEMBER_ROLES_MAX = 10
ROSTER_REVOCATIONS_MAX = 1024
WITNESS_QUORUM_MAX = 256
EVIDENCE_BYTES_MAX = 2 * 1024 * 1024 + 4096
EVIDENCE_ENVELOPES_MAX = 512
# Assumed, the spec gives none: an evidence map with 512 envelopes cannot fit in
# CBOR_ITEMS_MAX, so its item limit is CBOR_ITEMS_MAX plus one item per hash and envelope.
EVIDENCE_ITEMS_MAX = CBOR_ITEMS_MAX + 2 * LEVELS_MAX + EVIDENCE_ENVELOPES_MAX
BUNDLE_BYTES_MAX = 256 * 1024 * 1024
BUNDLE_ROSTERS_MAX = 1000
BUNDLE_RECORDS_MAX = 10_000
BUNDLE_EVIDENCE_MAX = 256
# Assumed as well: the largest item count a payload within the §19.2 counts can have.
_RECORD_MAP_ITEMS = 11 + (1 + DISCLOSURES_PER_RECORD_MAX) + (1 + COSIGNATURES_MAX) + (1 + LEVELS_MAX)
BUNDLE_ITEMS_MAX = (15 + 1 + BUNDLE_ROSTERS_MAX + 1 + BUNDLE_RECORDS_MAX * _RECORD_MAP_ITEMS
                    + 1 + BUNDLE_EVIDENCE_MAX)

CT_RECORD = "application/tfx-record+cbor"
CT_CHECKPOINT = "application/tfx-checkpoint+cbor"
CT_COSIGNATURE = "application/tfx-cosignature+cbor"
CT_BUNDLE = "application/tfx-audit-bundle+cbor"
CT_ROSTER = "application/tfx-roster+cbor"
TAG_COSE_SIGN1 = 18
TAG_COSE_SIGN = 98
ALG_EDDSA, ALG_ED25519 = -8, -19
MTH_EMPTY = hashlib.sha256(b"").digest()


class Invalid(Exception):
    """A structure or rule violation; the message is safe to print (no field values)."""


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def kid_of(public_key: bytes) -> bytes:
    """§3: the first 16 bytes of SHA-256 over the 32-byte raw public key."""
    return sha256(public_key)[:16]


def show(text: str, limit: int = 80) -> str:
    """File-controlled text (ids, names) made safe for a terminal line."""
    safe = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)
    return safe if len(safe) <= limit else safe[:limit] + "…"


# ---------------------------------------------------------------------------------------------
# CBOR profile decoder (§2.1)
# ---------------------------------------------------------------------------------------------

class Tag(NamedTuple):
    number: int
    content: object


class _CborError(Exception):
    pass


class _Decoder:
    """Decodes one data item while enforcing every rule of §2.1; bounded by items and depth."""

    _SHORTEST_MIN = {24: 24, 25: 1 << 8, 26: 1 << 16, 27: 1 << 32}

    def __init__(self, data: bytes, max_items: int):
        self.data = data
        self.pos = 0
        self.items_left = max_items

    def fail(self, reason: str):
        raise _CborError(f"{reason} (at byte {self.pos})")

    def head(self) -> tuple[int, int, int]:
        """Reads an initial byte and its argument; returns (major, additional info, argument)."""
        if self.pos >= len(self.data):
            self.fail("unexpected end of input")
        self.items_left -= 1
        if self.items_left < 0:
            self.fail("too many data items")
        initial = self.data[self.pos]
        major, info = initial >> 5, initial & 31
        if major == 7:
            if initial not in (0xF4, 0xF5, 0xF6):
                self.fail("floats and simple values other than true/false/null are not allowed")
            self.pos += 1
            return major, info, 0
        if info == 31:
            self.fail("indefinite-length items are not allowed")
        if info >= 28:
            self.fail("reserved additional information")
        if info < 24:
            self.pos += 1
            return major, info, info
        width = 1 << (info - 24)
        if self.pos + 1 + width > len(self.data):
            self.fail("unexpected end of input")
        argument = int.from_bytes(self.data[self.pos + 1:self.pos + 1 + width], "big")
        if argument < self._SHORTEST_MIN[info]:
            self.fail("integer or length not in shortest form")
        self.pos += 1 + width
        return major, info, argument

    def item(self, depth: int):
        if depth > CBOR_DEPTH_MAX:
            self.fail("nesting too deep")
        major, info, arg = self.head()
        if major == 0:
            return arg
        if major == 1:
            return -1 - arg
        if major in (2, 3):
            return self.string(major, arg)
        if major == 4:
            return self.array(arg, depth)
        if major == 5:
            return self.map(arg, depth)
        if major == 6:
            return Tag(arg, self.item(depth + 1))
        return {0xF4: False, 0xF5: True, 0xF6: None}[0xE0 | info]

    def string(self, major: int, length: int):
        if length > len(self.data) - self.pos:
            self.fail("length runs past the end of input")
        raw = self.data[self.pos:self.pos + length]
        if major == 2:
            self.pos += length
            return bytes(raw)
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            self.fail("text string is not UTF-8")
        self.pos += length
        return text

    def array(self, count: int, depth: int) -> list:
        if count > len(self.data) - self.pos:
            self.fail("array length runs past the end of input")
        return [self.item(depth + 1) for _ in range(count)]

    def map(self, count: int, depth: int) -> dict:
        if count > CBOR_MAP_ENTRIES_MAX:
            self.fail("map has too many entries")
        result: dict = {}
        seen: set[bytes] = set()
        for _ in range(count):
            if self.pos < len(self.data) and self.data[self.pos] >> 5 not in (0, 1, 3):
                self.fail("map keys must be integers or text")
            start = self.pos
            key = self.item(depth + 1)
            encoded = bytes(self.data[start:self.pos])
            if encoded in seen:
                self.fail("duplicate map key")
            seen.add(encoded)
            result[key] = self.item(depth + 1)
        return result


def cbor_decode(data: bytes, what: str, max_bytes: int, max_items: int = CBOR_ITEMS_MAX):
    """§2: size check, then profile scan and decode of exactly one data item."""
    if len(data) > max_bytes:
        raise Invalid(f"{what} too large: {len(data)} bytes (max {max_bytes})")
    decoder = _Decoder(data, max_items)
    try:
        value = decoder.item(0)
        if decoder.pos != len(data):
            decoder.fail("trailing bytes after the item")
    except _CborError as error:
        raise Invalid(f"{what} is not valid CBOR for tfx: {error}") from None
    return value


# ---------------------------------------------------------------------------------------------
# Shape helpers: each raises Invalid with "{what}: {detail}"
# ---------------------------------------------------------------------------------------------

MEMBER_ID = re.compile(r"[a-z0-9][a-z0-9.-]{0,63}")


def need_map(value, what: str, required: set, optional: set = frozenset()) -> dict:
    if not isinstance(value, dict):
        raise Invalid(f"{what}: expected a map")
    for key in value:
        if key not in required and key not in optional:
            raise Invalid(f"{what}: unexpected key {show(str(key))}")
    for key in sorted(required):
        if key not in value:
            raise Invalid(f"{what}: missing key {key}")
    return value


def need_uint(value, what: str) -> int:
    if type(value) is not int or value < 0:
        raise Invalid(f"{what}: expected an unsigned integer")
    return value


def need_text(value, what: str) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{what}: expected a text string")
    return value


def need_bytes(value, what: str, size: Optional[int] = None) -> bytes:
    if not isinstance(value, bytes):
        raise Invalid(f"{what}: expected a byte string")
    if size is not None and len(value) != size:
        raise Invalid(f"{what}: has {len(value)} bytes (expected {size})")
    return value


def need_array(value, what: str, max_len: int, min_len: int = 0) -> list:
    if not isinstance(value, list):
        raise Invalid(f"{what}: expected an array")
    if not min_len <= len(value) <= max_len:
        raise Invalid(f"{what}: {len(value)} entries (expected {min_len} to {max_len})")
    return value


def need_member_id(value, what: str) -> str:
    text = need_text(value, what)
    if not MEMBER_ID.fullmatch(text) or len(text.encode()) > MEMBER_ID_BYTES_MAX:
        raise Invalid(f"{what}: not a member id")
    return text


def need_hashes(value, what: str, max_len: int = LEVELS_MAX) -> list[bytes]:
    entries = need_array(value, what, max_len)
    return [need_bytes(h, f"{what} entry {i}", 32) for i, h in enumerate(entries)]


# ---------------------------------------------------------------------------------------------
# COSE_Sign1 (§6.2, §6.3, §9, §17, §19.1) and signatures (pycose)
# ---------------------------------------------------------------------------------------------

if ALG_ED25519 not in cose_algorithms.CoseAlgorithm.get_registered_classes():
    @cose_algorithms.CoseAlgorithm.register_attribute()
    class _Ed25519Alg(cose_algorithms.EdDSA):
        """RFC 9864's fully specified Ed25519 (-19), accepted like EdDSA (-8) by §6.2."""
        identifier = ALG_ED25519
        fullname = "ED25519"


@dataclass
class Sign1:
    protected: bytes
    alg: int
    kid: bytes
    payload: bytes
    signature: bytes


def split_sign1(data: bytes, what: str, max_bytes: int, max_items: int = CBOR_ITEMS_MAX) -> list:
    """Tag 18 around an array of 4: what makes a byte string a COSE_Sign1 at all."""
    value = cbor_decode(data, what, max_bytes, max_items)
    if not isinstance(value, Tag) or value.number != TAG_COSE_SIGN1:
        raise Invalid(f"{what}: not a COSE_Sign1 (CBOR tag 18)")
    if not isinstance(value.content, list) or len(value.content) != 4:
        count = len(value.content) if isinstance(value.content, list) else "not an array of"
        raise Invalid(f"{what}: COSE_Sign1 has {count} elements (expected 4)")
    return value.content


def sign1_from_parts(parts: list, what: str, content_type: str) -> Sign1:
    """Every row of the §6.2 acceptance table, with the content type of the structure."""
    protected_raw, unprotected, payload, signature = parts
    if unprotected != {}:
        raise Invalid(f"{what}: unprotected header must be empty")
    protected_raw = need_bytes(protected_raw, f"{what}: protected header")
    protected = need_map(cbor_decode(protected_raw, f"{what} protected header", ENVELOPE_BYTES_MAX),
                         what, {1, 3, 4})
    alg = protected[1]
    if type(alg) is not int or alg not in (ALG_EDDSA, ALG_ED25519):
        raise Invalid(f"{what}: unsupported algorithm (expected EdDSA: -8 or -19)")
    if protected[3] != content_type:
        raise Invalid(f"{what}: content type is not \"{content_type}\"")
    kid = protected[4]
    if not isinstance(kid, bytes) or len(kid) != 16:
        raise Invalid(f"{what}: kid is not a 16-byte byte string")
    need_bytes(payload, f"{what}: payload")
    if not isinstance(signature, bytes) or len(signature) != 64:
        raise Invalid(f"{what}: signature is not a 64-byte byte string")
    return Sign1(protected_raw, alg, kid, payload, signature)


def parse_sign1(data: bytes, what: str, max_bytes: int, content_type: str) -> Sign1:
    return sign1_from_parts(split_sign1(data, what, max_bytes), what, content_type)


def sign1_verifies(message: Sign1, public_key: bytes) -> bool:
    """Ed25519 over Sig_structure ["Signature1", protected, h'', payload] (§6.3), by pycose.

    pycose gets the received protected and payload byte strings, so nothing is re-encoded.
    """
    try:
        cose = Sign1Message.from_cose_obj(
            [message.protected, {}, message.payload, message.signature], True)
        cose.key = OKPKey(crv=Ed25519, x=public_key)
        return bool(cose.verify_signature())
    except Exception:  # pycose raises assorted types for unusable keys; all mean "not verified"
        return False


def _cbor_head(major: int, argument: int) -> bytes:
    """A head in shortest form (§2.2), for the one structure this script encodes."""
    if argument < 24:
        return bytes([major << 5 | argument])
    for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if argument < 1 << (8 * width):
            return bytes([major << 5 | info]) + argument.to_bytes(width, "big")
    raise ValueError("argument too large")


def cose_sign_sig_structure(body_protected: bytes, sign_protected: bytes, payload: bytes) -> bytes:
    """RFC 9052 §4.4 for COSE_Sign (§13.2): ["Signature", body, sign protected, h'', payload]."""
    out = _cbor_head(4, 5) + _cbor_head(3, 9) + b"Signature"
    for part in (body_protected, sign_protected, b"", payload):
        out += _cbor_head(2, len(part)) + part
    return out


def ed25519_verifies(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        return True
    except (InvalidSignature, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# Roster (§13)
# ---------------------------------------------------------------------------------------------

@dataclass
class MemberKey:
    public: bytes
    kid: bytes
    valid_from: int
    valid_until: Optional[int]


@dataclass
class Roster:
    hash: bytes
    consortium: str
    version: int
    previous: Optional[bytes]
    governors: list  # [(member id, public key)]
    threshold: int
    members: dict  # member id -> [MemberKey]
    revocations: dict  # member id -> revoked at (ms)
    witness_quorum: int
    body_protected: bytes
    payload: bytes
    signatures: list  # [(signature protected bytes, kid, signature)]


def parse_member_keys(value, what: str) -> list[MemberKey]:
    entries = need_array(value, what, MEMBER_KEYS_MAX, 1)
    keys: list[MemberKey] = []
    for i, entry in enumerate(entries):
        entry = need_array(entry, f"{what} {i}", 3, 3)
        public = need_bytes(entry[0], f"{what} {i} public key", 32)
        valid_from = need_uint(entry[1], f"{what} {i} valid_from")
        until = None if entry[2] is None else need_uint(entry[2], f"{what} {i} valid_until")
        if until is not None and until <= valid_from:
            raise Invalid(f"{what} {i}: valid_until is not after valid_from")
        if any(k.public == public for k in keys):
            raise Invalid(f"{what}: key {i} is listed twice")
        keys.append(MemberKey(public, kid_of(public), valid_from, until))
    return keys


def parse_member(value, what: str) -> tuple[str, list[MemberKey]]:
    """A member map of §13.1; roles are checked for shape only (SPEC.md does not list them)."""
    member = need_map(value, what, {1, 2, 3, 4, 5, 6})
    member_id = need_member_id(member[1], f"{what} id")
    name = need_text(member[2], f"{what} display name")
    if not 1 <= len(name) <= TEXT_CHARS_MAX or any(unicodedata.category(c) == "Cc" for c in name):
        raise Invalid(f"{what}: display name is not 1-200 printable characters")
    roles = need_array(member[3], f"{what} roles", MEMBER_ROLES_MAX, 1)
    if any(not isinstance(r, str) or not r for r in roles) or len(set(roles)) != len(roles):
        raise Invalid(f"{what}: roles are not unique role names")
    keys = parse_member_keys(member[4], f"{what} key")
    need_bytes(member[5], f"{what} TLS certificate hash", 32)
    host, colon, port = need_text(member[6], f"{what} endpoint").rpartition(":")
    if not host or not colon or not re.fullmatch(r"[0-9]{1,5}", port) or int(port) > 65535:
        raise Invalid(f"{what}: endpoint is not host:port")
    return member_id, keys


def parse_governors(value) -> list[tuple[str, bytes]]:
    entries = need_array(value, "roster governors", ROSTER_GOVERNORS_MAX, 1)
    governors = []
    for i, entry in enumerate(entries):
        entry = need_array(entry, f"roster governor {i}", 2, 2)
        governors.append((need_member_id(entry[0], f"roster governor {i} id"),
                          need_bytes(entry[1], f"roster governor {i} key", 32)))
    if len({g[0] for g in governors}) != len(governors) or \
            len({g[1] for g in governors}) != len(governors):
        raise Invalid("roster: governor ids and keys must be unique")
    return governors


def parse_revocations(value, members: dict) -> dict:
    entries = need_array(value, "roster revocations", ROSTER_REVOCATIONS_MAX)
    revoked: dict = {}
    for i, entry in enumerate(entries):
        entry = need_array(entry, f"roster revocation {i}", 3, 3)
        member_id = need_member_id(entry[0], f"roster revocation {i} member")
        at = need_uint(entry[1], f"roster revocation {i} time")
        need_text(entry[2], f"roster revocation {i} reason")
        if member_id not in members:
            raise Invalid(f"roster revocation {i}: names no member")
        if member_id in revoked:
            raise Invalid(f"roster revocation {i}: second revocation of one member")
        revoked[member_id] = at
    return revoked


def parse_roster_payload(payload: bytes) -> dict:
    """§13.1; returns the fields of Roster that come from the payload."""
    doc = need_map(cbor_decode(payload, "roster payload", ROSTER_BYTES_MAX, ROSTER_ITEMS_MAX),
                   "roster", {1, 2, 4, 5, 6, 7, 8, 9}, {3, 10})
    consortium = need_text(doc[1], "roster consortium")
    if not 1 <= len(consortium) <= 64:
        raise Invalid("roster: consortium name is not 1-64 characters")
    version = need_uint(doc[2], "roster version")
    if version < 1:
        raise Invalid("roster: version 0")
    previous = need_bytes(doc[3], "roster previous", 32) if 3 in doc else None
    if (previous is None) != (version == 1):
        raise Invalid("roster: previous must be absent exactly in version 1")
    need_uint(doc[4], "roster issued_at")
    governors = parse_governors(doc[5])
    threshold = need_uint(doc[6], "roster threshold")
    if not 1 <= threshold <= len(governors):
        raise Invalid("roster: threshold is not between 1 and the number of governors")
    members: dict = {}
    for i, entry in enumerate(need_array(doc[7], "roster members", ROSTER_MEMBERS_MAX)):
        member_id, keys = parse_member(entry, f"roster member {i}")
        if member_id in members:
            raise Invalid(f"roster member {i}: id listed twice")
        members[member_id] = keys
    revocations = parse_revocations(doc[8], members)
    need_bytes(doc[9], "roster ca_fingerprint", 32)
    quorum = need_uint(doc[10], "roster witness_quorum") if 10 in doc else 1
    if not 1 <= quorum <= WITNESS_QUORUM_MAX:
        raise Invalid("roster: witness_quorum is not 1-256")
    return dict(consortium=consortium, version=version, previous=previous, governors=governors,
                threshold=threshold, members=members, revocations=revocations,
                witness_quorum=quorum)


def parse_roster(data: bytes) -> Roster:
    """§13.2: #6.98([protected, {}, payload, [signature, ...]])."""
    value = cbor_decode(data, "roster", ROSTER_BYTES_MAX)
    if not isinstance(value, Tag) or value.number != TAG_COSE_SIGN:
        raise Invalid("roster: not a COSE_Sign (CBOR tag 98)")
    parts = need_array(value.content, "roster COSE_Sign", 4, 4)
    body_protected = need_bytes(parts[0], "roster protected header")
    header = need_map(cbor_decode(body_protected, "roster protected header", ROSTER_BYTES_MAX),
                      "roster protected header", {3})
    if header[3] != CT_ROSTER:
        raise Invalid(f"roster: content type is not \"{CT_ROSTER}\"")
    if parts[1] != {}:
        raise Invalid("roster: unprotected header must be empty")
    payload = need_bytes(parts[2], "roster payload")
    signatures = []
    for i, entry in enumerate(need_array(parts[3], "roster signatures", ROSTER_GOVERNORS_MAX)):
        what = f"roster signature {i}"
        entry = need_array(entry, what, 3, 3)
        sign_protected = need_bytes(entry[0], f"{what} protected header")
        sign_header = need_map(cbor_decode(sign_protected, f"{what} protected header",
                                           ROSTER_BYTES_MAX), what, {1, 4})
        if type(sign_header[1]) is not int or sign_header[1] not in (ALG_EDDSA, ALG_ED25519):
            raise Invalid(f"{what}: unsupported algorithm (expected EdDSA: -8 or -19)")
        kid = need_bytes(sign_header[4], f"{what} kid", 16)
        if entry[1] != {}:
            raise Invalid(f"{what}: unprotected header must be empty")
        signatures.append((sign_protected, kid, need_bytes(entry[2], f"{what} signature", 64)))
    return Roster(hash=sha256(payload), body_protected=body_protected, payload=payload,
                  signatures=signatures, **parse_roster_payload(payload))


def count_governor_signatures(roster: Roster, governors: list) -> tuple[int, int]:
    """§13.3: (distinct governors of `governors` with a valid signature, signatures not counted)."""
    signed: set[str] = set()
    not_counted = 0
    for sign_protected, kid, signature in roster.signatures:
        to_be_signed = cose_sign_sig_structure(roster.body_protected, sign_protected, roster.payload)
        names = [gid for gid, key in governors
                 if kid_of(key) == kid and ed25519_verifies(key, signature, to_be_signed)]
        if names:
            signed.update(names)
        else:
            not_counted += 1
    return len(signed), not_counted


def check_roster_version(roster: Roster, index: int, predecessor: Optional[Roster],
                         genesis: bytes) -> str:
    """§13.3 for the roster at position `index` (0 = version 1); returns the detail on success."""
    expected = index + 1
    if roster.version != expected:
        raise Invalid(f"is version {roster.version} (expected {expected})")
    if predecessor is None:
        if roster.hash != genesis:
            raise Invalid(f"hash {roster.hash.hex()} is not the trusted genesis {genesis.hex()}")
        approvers, threshold = roster.governors, roster.threshold
    else:
        if roster.previous != predecessor.hash:
            raise Invalid("previous is not the hash of the version before")
        approvers, threshold = predecessor.governors, predecessor.threshold
    valid, not_counted = count_governor_signatures(roster, approvers)
    summary = (f"signed by {valid} of {threshold} required governors "
               f"({not_counted} invalid or unknown signatures)")
    if valid < threshold:
        raise Invalid(summary)
    return f"hash {roster.hash.hex()}, {summary}"


def find_key(roster: Roster, member: str, kid: bytes, at_ms: int) -> bytes:
    """§13.4: the key with id `kid` that `member` held at `at_ms`, not revoked by then."""
    keys = roster.members.get(member)
    if keys is None:
        raise Invalid(f"{show(member)} is not a member of the roster")
    revoked_at = roster.revocations.get(member)
    if revoked_at is not None and at_ms >= revoked_at:
        raise Invalid(f"{show(member)} is revoked since {revoked_at}, before {at_ms}")
    for key in keys:
        if key.kid == kid and key.valid_from <= at_ms and \
                (key.valid_until is None or at_ms < key.valid_until):
            return key.public
    raise Invalid(f"signing key {kid.hex()} of {show(member)} is not known "
                  f"(or not valid at {at_ms})")


def verify_sign1_under(message: Sign1, roster: Roster, signer: str, at_ms: int, what: str) -> str:
    """Key lookup (§13.4) then signature (§6.3); returns the kid hex."""
    public_key = find_key(roster, signer, message.kid, at_ms)
    if not sign1_verifies(message, public_key):
        raise Invalid(f"signature check failed: {what} was not signed by key {message.kid.hex()}")
    return message.kid.hex()


# ---------------------------------------------------------------------------------------------
# Record fields and value rules (§4.2, §4.3, §4.6)
# ---------------------------------------------------------------------------------------------

Rule = Callable[[object], Optional[str]]  # returns None when the value is valid, else the rule

WHITE_SPACE = "".join(map(chr, [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
                                0x2028, 0x2029, 0x202F, 0x205F, 0x3000]))
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
BANDS = ("lt-1m-cny", "1m-5m-cny", "5m-10m-cny", "10m-50m-cny", "50m-100m-cny", "ge-100m-cny")
AMOUNT_FEN_MAX = 2 ** 53 - 1


def text_rule(value) -> Optional[str]:
    if not isinstance(value, str):
        return "must be text"
    if value != value.strip(WHITE_SPACE):
        return "value is not in normal form"
    if not 1 <= len(value) <= TEXT_CHARS_MAX:
        return "must be 1 to 200 characters"
    if any(unicodedata.category(c) == "Cc" for c in value):
        return "must not contain control characters"
    return None


def uscc_rule(value) -> Optional[str]:
    if not isinstance(value, str) or len(value) != 18 or any(c not in USCC_ALPHABET for c in value):
        return "is not 18 characters of the USCC alphabet"
    if not value[2:8].isdigit():
        return "characters 3-8 must be digits"
    total = sum(USCC_ALPHABET.index(c) * pow(3, i, 31) for i, c in enumerate(value[:17]))
    if USCC_ALPHABET[(31 - total % 31) % 31] != value[17]:
        return "check character does not match"
    return None


def enum_rule(*tokens: str) -> Rule:
    return lambda value: None if isinstance(value, str) and value in tokens else "is not an allowed value"


def uint_rule(maximum: int) -> Rule:
    return lambda value: None if type(value) is int and 0 <= value <= maximum else f"must be 0 to {maximum}"


def bool_rule(value) -> Optional[str]:
    return None if isinstance(value, bool) else "must be true or false"


def date_rule(value) -> Optional[str]:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        return "is not a YYYY-MM-DD date"
    year, month, day = int(value[:4]), int(value[5:7]), int(value[8:])
    if not 1900 <= year <= 2199:
        return "year must be 1900-2199"
    try:
        datetime.date(year, month, day)
    except ValueError:
        return "is not a real day"
    return None


def period_rule(value) -> Optional[str]:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}Q[1-4]", value):
        return "is not a YYYYQn period"
    return None if 1900 <= int(value[:4]) <= 2199 else "year must be 1900-2199"


def pattern_rule(pattern: str, rule: str) -> Rule:
    return lambda value: None if isinstance(value, str) and re.fullmatch(pattern, value) else rule


def patent_number_rule(value) -> Optional[str]:
    if not isinstance(value, str) or not re.fullmatch(r"(?:[0-9]{12}|[0-9]{8})\.[0-9X]", value):
        return "is not a CN patent application number in normal form"
    digits = value[:-2]
    if len(digits) == 12 and not 2003 <= int(digits[:4]) <= 2099:
        return "year must be 2003-2099"
    if digits[4 if len(digits) == 12 else 2] not in "12389":
        return "type digit must be 1, 2, 3, 8 or 9"
    check = sum(int(d) * (2 + i % 8) for i, d in enumerate(digits)) % 11
    return None if ("X" if check == 10 else str(check)) == value[-1] else "check character does not match"


def pseudonym_rule(value) -> Optional[str]:
    match = isinstance(value, str) and re.fullmatch(r"ps1\.(0|[1-9][0-9]{0,9})\.[0-9a-f]{32}", value)
    if not match or int(match.group(1)) > 0xFFFFFFFF:
        return "is not a pseudonym ps1.<epoch>.<32 hex digits>"
    return None


def list_rule(item_pattern: str, rule: str) -> Rule:
    def check(value) -> Optional[str]:
        if not isinstance(value, list) or not 1 <= len(value) <= LIST_ITEMS_MAX:
            return "must be a list of 1 to 64 items"
        if any(not isinstance(v, str) or not re.fullmatch(item_pattern, v) for v in value):
            return rule
        return None if len(set(value)) == len(value) else "an item appears twice"
    return check


TEXT, USCC, DATE, PERIOD, BOOL, PSEUDONYM = text_rule, uscc_rule, date_rule, period_rule, bool_rule, pseudonym_rule
AMOUNT, BAND = uint_rule(AMOUNT_FEN_MAX), enum_rule(*BANDS)
REGION_CODE = pattern_rule(r"[0-9]{6}", "must be six ASCII digits")

# §4.2: every field of every kind (submitted and derived), and §4.1's digest count per kind.
KINDS: dict[str, tuple[int, dict[str, Rule]]] = {
    "credit": (24, {
        "subject_uscc": USCC, "subject_name": TEXT, "region_code": REGION_CODE,
        "industry": pattern_rule(r"[A-T]", "must be one capital letter A-T"), "lender": TEXT,
        "product": enum_rule("tianfu-kechuang-dai", "points-loan", "ip-pledge-loan", "supply-chain",
                             "working-capital", "other"),
        "contract_amount_fen": AMOUNT, "balance_fen": AMOUNT, "start_date": DATE,
        "maturity_date": DATE,
        "guarantee": enum_rule("credit", "guarantee", "mortgage", "pledge", "ip-pledge"),
        "classification": enum_rule("normal", "special-mention", "substandard", "doubtful", "loss"),
        "overdue_days": uint_rule(36_500), "risk_compensation_pool": BOOL,
        "subject_pseudonym": PSEUDONYM, "contract_amount_band": BAND, "balance_band": BAND,
        "region_city": REGION_CODE}),
    "ip-valuation": (20, {
        "subject_uscc": USCC, "subject_name": TEXT,
        "ip_type": enum_rule("invention-patent", "utility-model", "design-patent", "trademark",
                             "copyright", "software-copyright", "ic-layout"),
        "patent_number": patent_number_rule, "registration_number": TEXT, "valuation_fen": AMOUNT,
        "method": enum_rule("income", "market", "cost"), "base_date": DATE, "report_id": TEXT,
        "appraiser": TEXT, "valid_until": DATE,
        "pledge_status": enum_rule("none", "pledged", "released"), "pledgee": TEXT,
        "pledge_registration_number": TEXT, "subject_pseudonym": PSEUDONYM,
        "valuation_band": BAND}),
    "monitoring": (16, {
        "subject_uscc": USCC, "subject_name": TEXT, "period": PERIOD,
        "event": enum_rule("loan", "equity-round", "listing-stage", "innovation-points"),
        "round": enum_rule("seed", "angel", "pre-a", "a", "b", "c", "d-plus", "pre-ipo", "strategic"),
        "amount_fen": AMOUNT,
        "board": enum_rule("main-board", "star-market", "chinext", "bse", "neeq", "regional-equity"),
        "listing_stage": enum_rule("tutoring", "filed", "accepted", "approved", "registered", "listed"),
        "innovation_points_score": uint_rule(1000), "subject_pseudonym": PSEUDONYM,
        "amount_band": BAND}),
    "risk-warning": (8, {
        "subject_pseudonym": PSEUDONYM, "period": PERIOD,
        "level": enum_rule("blue", "yellow", "orange", "red"),
        "rule_ids": list_rule(r"[a-z0-9._-]{1,64}", "items must be 1-64 of [a-z0-9._-]"),
        "basis_record_ids": list_rule(r"[0-9a-f]{64}", "items must be record ids in lowercase hex")}),
}


# ---------------------------------------------------------------------------------------------
# Records (§5, §6) and checkpoints/cosignatures (§9, §17)
# ---------------------------------------------------------------------------------------------

@dataclass
class Header:
    origin: str
    seq: int
    kind: str
    issued_at_ms: int
    digests: list


@dataclass
class Checkpoint:
    origin: str
    size: int
    root: bytes
    time_ms: int


def parse_header(payload: bytes) -> Header:
    """§6.1 header rules (step 2 of §6.4)."""
    doc = need_map(cbor_decode(payload, "record header", ENVELOPE_BYTES_MAX),
                   "record header", {1, 2, 3, 4, 5, 7}, {6})
    origin = need_member_id(doc[1], "record header origin")
    seq = need_uint(doc[2], "record header seq")
    kind = need_text(doc[3], "record header kind")
    if kind not in KINDS:
        raise Invalid(f"record header: unknown record kind \"{show(kind)}\"")
    if need_uint(doc[4], "record header schema") != 1:
        raise Invalid(f"record header: unsupported schema version {doc[4]} for {kind}")
    issued_at = need_uint(doc[5], "record header issued_at_ms")
    if 6 in doc:
        need_bytes(doc[6], "record header supersedes", 32)
    count = KINDS[kind][0]
    digests = need_array(doc[7], "record header digests", count, count)
    digests = [need_bytes(d, f"record header digest {i}", 32) for i, d in enumerate(digests)]
    if any(a >= b for a, b in zip(digests, digests[1:])):
        raise Invalid("record header: digests are not sorted and unique")
    return Header(origin, seq, kind, issued_at, digests)


def verify_envelope(envelope: bytes, roster: Roster) -> Header:
    """§6.4 steps 1-4: structure, header rules, key at the issue time, signature."""
    message = parse_sign1(envelope, "envelope", ENVELOPE_BYTES_MAX, CT_RECORD)
    header = parse_header(message.payload)
    verify_sign1_under(message, roster, header.origin, header.issued_at_ms, "record header")
    return header


def check_disclosures(disclosures: list, header: Header) -> list[str]:
    """§6.4 step 5; returns the disclosed field names (never the values)."""
    rules = KINDS[header.kind][1]
    signed = set(header.digests)
    names: list[str] = []
    for i, raw in enumerate(disclosures):
        doc = cbor_decode(raw, "disclosure", DISCLOSURE_BYTES_MAX)
        if not isinstance(doc, list) or len(doc) != 3:
            raise Invalid(f"disclosure {i}: not an array of 3 elements")
        salt, value, name = doc
        need_bytes(salt, f"disclosure {i}: salt", 16)
        name = need_text(name, f"disclosure {i}: name")
        if not (isinstance(value, (str, bool)) or (type(value) is int and value >= 0) or
                (isinstance(value, list) and all(isinstance(v, str) for v in value))):
            raise Invalid(f"disclosure {i}: value is not text, an unsigned integer, a bool or a text list")
        if sha256(raw) not in signed:
            raise Invalid(f"disclosure {i} (field {show(name)}): digest is not in the signed header")
        if name not in rules:
            raise Invalid(f"disclosure {i}: field \"{show(name)}\" does not exist in {header.kind} records")
        problem = rules[name](value)
        if problem:
            raise Invalid(f"disclosure {i} (field {name}): {problem}")
        if name in names:
            raise Invalid(f"disclosure {i}: field {name} is disclosed twice")
        names.append(name)
    return names


def verify_checkpoint(data: bytes, roster: Roster) -> Checkpoint:
    """§9: structure and content type, payload, key at time_ms, signature."""
    message = parse_sign1(data, "checkpoint", CHECKPOINT_BYTES_MAX, CT_CHECKPOINT)
    doc = need_map(cbor_decode(message.payload, "checkpoint payload", CHECKPOINT_BYTES_MAX),
                   "checkpoint", {1, 2, 3, 4})
    checkpoint = Checkpoint(need_member_id(doc[1], "checkpoint origin"),
                            need_uint(doc[2], "checkpoint size"),
                            need_bytes(doc[3], "checkpoint root", 32),
                            need_uint(doc[4], "checkpoint time_ms"))
    verify_sign1_under(message, roster, checkpoint.origin, checkpoint.time_ms, "checkpoint")
    return checkpoint


def verify_cosignature(data: bytes, roster: Roster, checkpoint: Checkpoint) -> str:
    """§17: a valid cosignature by a witness other than the origin of this very checkpoint."""
    message = parse_sign1(data, "cosignature", COSIGNATURE_BYTES_MAX, CT_COSIGNATURE)
    doc = need_map(cbor_decode(message.payload, "cosignature payload", COSIGNATURE_BYTES_MAX),
                   "cosignature", {1, 2, 3, 4, 5})
    witness = need_member_id(doc[1], "cosignature witness")
    origin = need_member_id(doc[2], "cosignature origin")
    size = need_uint(doc[3], "cosignature size")
    root = need_bytes(doc[4], "cosignature root", 32)
    time_ms = need_uint(doc[5], "cosignature time")
    if witness == origin:
        raise Invalid(f"witness {show(witness)} is the origin")
    if (origin, size, root) != (checkpoint.origin, checkpoint.size, checkpoint.root):
        raise Invalid(f"cosignature by {show(witness)} names another checkpoint")
    verify_sign1_under(message, roster, witness, time_ms, "cosignature")
    return witness


# ---------------------------------------------------------------------------------------------
# Merkle trees (§8, RFC 9162 §2.1)
# ---------------------------------------------------------------------------------------------

def leaf_hash(envelope: bytes) -> bytes:
    return sha256(b"\x00" + envelope)


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def verify_inclusion(index: int, size: int, leaf: bytes, proof: list, root: bytes) -> None:
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        raise Invalid(f"index {index} is outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise Invalid("proof has the wrong length")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise Invalid("proof has the wrong length")
    if r != root:
        raise Invalid("proof does not lead to the expected root")


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: list) -> None:
    """RFC 9162 §2.1.4.2, with §8.3's rules for first = 0 and first = second."""
    if first > second:
        raise Invalid(f"tree sizes {first} → {second} do not grow")
    if first == 0 or first == second:
        if proof:
            raise Invalid("proof has the wrong length")
        if first == second and first_root != second_root:
            raise Invalid("proof does not lead to the expected root")
        return
    if not proof:
        raise Invalid("proof has the wrong length")
    path = [first_root] + proof if first & (first - 1) == 0 else list(proof)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise Invalid("proof has the wrong length")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise Invalid("proof has the wrong length")
    if fr != first_root or sr != second_root:
        raise Invalid("proof does not lead to the expected root")


def fold(frontier: list[tuple[int, bytes]]) -> bytes:
    """MTH of a log from its frontier (perfect subtrees, largest first), §8.1-§8.2."""
    if not frontier:
        return MTH_EMPTY
    root = frontier[-1][1]
    for _, subtree in reversed(frontier[:-1]):
        root = node_hash(subtree, root)
    return root


def append_leaf(frontier: list[tuple[int, bytes]], leaf: bytes) -> None:
    """§8.2: append one leaf, completing nodes as far as carries propagate."""
    frontier.append((0, leaf))
    while len(frontier) >= 2 and frontier[-1][0] == frontier[-2][0]:
        (level, left), (_, right) = frontier[-2], frontier[-1]
        frontier[-2:] = [(level + 1, node_hash(left, right))]


# ---------------------------------------------------------------------------------------------
# Equivocation evidence (§18)
# ---------------------------------------------------------------------------------------------

class Equivocation(NamedTuple):
    origin: str
    fork_at: int
    summary: str


def evidence_checkpoint(value, roster: Roster, origin: str, what: str) -> Checkpoint:
    checkpoint = verify_checkpoint(need_bytes(value, what), roster)
    if checkpoint.origin != origin:
        raise Invalid(f"{what} is not {show(origin)}'s")
    return checkpoint


def evidence_envelope(value, roster: Roster, origin: str, what: str) -> Header:
    header = verify_envelope(need_bytes(value, what), roster)
    if header.origin != origin:
        raise Invalid(f"{what} is not {show(origin)}'s")
    return header


def evidence_records(doc: dict, roster: Roster, origin: str) -> Equivocation:
    """Kind 1: two signed envelopes at one sequence number with different record ids."""
    a = evidence_envelope(doc[3], roster, origin, "envelope a")
    b = evidence_envelope(doc[4], roster, origin, "envelope b")
    if a.seq != b.seq or doc[3] == doc[4]:
        raise Invalid("the envelopes do not share a sequence number with different record ids")
    return Equivocation(origin, a.seq, f"two records at seq {a.seq}")


def evidence_checkpoints(doc: dict, roster: Roster, origin: str) -> Equivocation:
    """Kind 2: two signed checkpoints of one size with different roots."""
    a = evidence_checkpoint(doc[3], roster, origin, "checkpoint a")
    b = evidence_checkpoint(doc[4], roster, origin, "checkpoint b")
    if a.size != b.size or a.root == b.root:
        raise Invalid("the checkpoints do not share a size with different roots")
    return Equivocation(origin, max(a.size - 1, 0), f"two roots at size {a.size}")


def evidence_inconsistent(doc: dict, roster: Roster, origin: str) -> Equivocation:
    """Kind 3: older frontier + signed envelopes in between do not give the newer root."""
    older = evidence_checkpoint(doc[3], roster, origin, "older checkpoint") if 3 in doc else None
    newer = evidence_checkpoint(doc[4], roster, origin, "newer checkpoint")
    older_size = older.size if older else 0
    hashes = need_hashes(doc[5], "frontier")
    levels = [bit for bit in range(LEVELS_MAX - 1, -1, -1) if older_size >> bit & 1]
    if len(hashes) != len(levels):
        raise Invalid(f"the frontier has {len(hashes)} subtrees (size {older_size} has {len(levels)})")
    frontier = list(zip(levels, hashes))
    if older and fold(frontier) != older.root:
        raise Invalid("the frontier does not fold to the older root")
    envelopes = need_array(doc[6], "envelopes", EVIDENCE_ENVELOPES_MAX)
    if newer.size < older_size or newer.size - older_size != len(envelopes):
        raise Invalid(f"{len(envelopes)} envelopes do not lead from size {older_size} to {newer.size}")
    for i, envelope in enumerate(envelopes):
        header = evidence_envelope(envelope, roster, origin, f"envelope {i}")
        if header.seq != older_size + i:
            raise Invalid(f"envelope {i} has seq {header.seq} (expected {older_size + i})")
        append_leaf(frontier, leaf_hash(envelope))
    if fold(frontier) == newer.root:
        raise Invalid("the envelopes do produce the newer root: no inconsistency shown")
    return Equivocation(origin, max(newer.size - 1, 0),
                        f"log from size {older_size} does not extend to the signed size {newer.size}")


def evidence_diverged(doc: dict, roster: Roster, origin: str) -> Equivocation:
    """Kind 4: b's tree at a's size has another root than a signed."""
    a = evidence_checkpoint(doc[3], roster, origin, "checkpoint a")
    b = evidence_checkpoint(doc[4], roster, origin, "checkpoint b")
    if not a.size < b.size:
        raise Invalid("checkpoint b is not larger than checkpoint a")
    proof = need_hashes(doc[5], "consistency proof", 2 * LEVELS_MAX)
    root_at_a = need_bytes(doc[7], "root at a's size", 32)
    if a.size == 0 and root_at_a != MTH_EMPTY:
        raise Invalid("the root of an empty tree is SHA-256(\"\")")
    verify_consistency(a.size, b.size, root_at_a, b.root, proof)
    if root_at_a == a.root:
        raise Invalid("b's tree at a's size has a's root: no divergence shown")
    return Equivocation(origin, max(a.size - 1, 0), f"diverged from size {a.size} to {b.size}")


# kind -> (required keys, optional keys, checker)
EVIDENCE_KINDS = {
    1: ({1, 2, 3, 4}, set(), evidence_records),
    2: ({1, 2, 3, 4}, set(), evidence_checkpoints),
    3: ({1, 2, 4, 5, 6}, {3}, evidence_inconsistent),
    4: ({1, 2, 3, 4, 5, 7}, set(), evidence_diverged),
}


def verify_evidence(data: bytes, roster: Roster) -> Equivocation:
    doc = cbor_decode(data, "evidence", EVIDENCE_BYTES_MAX, EVIDENCE_ITEMS_MAX)
    kind = need_map(doc, "evidence", {1, 2}, set(range(3, 8)))[1]
    if type(kind) is not int or kind not in EVIDENCE_KINDS:
        raise Invalid("evidence: unknown kind")
    required, optional, checker = EVIDENCE_KINDS[kind]
    need_map(doc, f"evidence kind {kind}", required, optional)
    return checker(doc, roster, need_member_id(doc[2], "evidence origin"))


# ---------------------------------------------------------------------------------------------
# Bundle (§19)
# ---------------------------------------------------------------------------------------------

@dataclass
class BundleRecord:
    envelope: bytes
    disclosures: list
    checkpoint: bytes
    cosignatures: list
    proof: list


@dataclass
class Bundle:
    message: Sign1
    consortium: str
    created: int
    exporter: str
    rosters: list
    records: list
    evidence: list


def parse_bundle_record(value, i: int) -> BundleRecord:
    what = f"record {i}"
    doc = need_map(value, what, {1, 2, 3, 4, 5})
    envelope = need_bytes(doc[1], f"{what} envelope")
    if len(envelope) > ENVELOPE_BYTES_MAX:
        raise Invalid(f"{what}: envelope too large: {len(envelope)} bytes (max {ENVELOPE_BYTES_MAX})")
    disclosures = need_array(doc[2], f"{what} disclosures", DISCLOSURES_PER_RECORD_MAX)
    for j, disclosure in enumerate(disclosures):
        need_bytes(disclosure, f"{what} disclosure {j}")
    cosignatures = need_array(doc[4], f"{what} cosignatures", COSIGNATURES_MAX)
    for j, cosignature in enumerate(cosignatures):
        need_bytes(cosignature, f"{what} cosignature {j}")
    return BundleRecord(envelope, disclosures, need_bytes(doc[3], f"{what} checkpoint"),
                        cosignatures, need_hashes(doc[5], f"{what} proof"))


def parse_bundle(parts: list) -> Bundle:
    """§19.1-§19.2: the COSE_Sign1 header and the payload's container shape."""
    message = sign1_from_parts(parts, "bundle", CT_BUNDLE)
    doc = need_map(cbor_decode(message.payload, "bundle payload", BUNDLE_BYTES_MAX, BUNDLE_ITEMS_MAX),
                   "bundle payload", {1, 2, 3, 4, 5, 6, 7})
    if type(doc[1]) is not int or doc[1] != 1:
        raise Invalid("bundle payload: unsupported format (expected 1)")
    rosters = need_array(doc[5], "bundle rosters", BUNDLE_ROSTERS_MAX, 1)
    for i, roster in enumerate(rosters):
        need_bytes(roster, f"bundle roster {i}")
    evidence = need_array(doc[7], "bundle evidence", BUNDLE_EVIDENCE_MAX)
    for i, item in enumerate(evidence):
        need_bytes(item, f"bundle evidence {i}")
    records = need_array(doc[6], "bundle records", BUNDLE_RECORDS_MAX)
    return Bundle(message, need_text(doc[2], "bundle consortium"),
                  need_uint(doc[3], "bundle created"), need_member_id(doc[4], "bundle exporter"),
                  rosters, [parse_bundle_record(r, i) for i, r in enumerate(records)], evidence)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

@dataclass
class Check:
    check: str
    ok: bool
    detail: str


@dataclass
class Report:
    checks: list = field(default_factory=list)
    records: list = field(default_factory=list)
    equivocations: list = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def verified(self) -> bool:
        return all(c.ok for c in self.checks) and all(r["verified"] for r in self.records)


def run_check(checks: list, name: str, run: Callable[[], str]) -> bool:
    """Runs one check; an Invalid becomes a failed check with its message."""
    try:
        checks.append(Check(name, True, run()))
        return True
    except Invalid as error:
        checks.append(Check(name, False, str(error)))
        return False


def memo(cache: dict, key, compute: Callable):
    """Result (or Invalid) of compute(), once per key: records often share a checkpoint."""
    if key not in cache:
        try:
            cache[key] = (True, compute())
        except Invalid as error:
            cache[key] = (False, error)
    ok, value = cache[key]
    if not ok:
        raise value
    return value


def not_checked(reason: str) -> Callable[[], str]:
    def run() -> str:
        raise Invalid(f"not checked: {reason}")
    return run


def check_rosters(report: Report, bundle: Bundle, genesis: Optional[bytes]) -> Optional[Roster]:
    """§19.3 step 2: returns the last version of the chain that verified (None if version 1 fails)."""
    trusted: Optional[Roster] = None
    for i, raw in enumerate(bundle.rosters):
        try:
            roster = parse_roster(raw)
        except Invalid as error:
            report.checks.append(Check(f"roster version {i + 1}", False, str(error)))
            return trusted
        if i == 0:
            pinned = genesis is not None
            genesis = genesis if pinned else roster.hash
            report.info.update(genesis=genesis.hex(), genesis_pinned=pinned)
            report.checks.append(Check("genesis", True, genesis.hex() + (
                " (pinned with --genesis)" if pinned else
                " (NOT pinned: taken from the bundle's own roster version 1; pass --genesis to pin it)")))
        if not run_check(report.checks, f"roster version {i + 1}",
                         lambda: check_roster_version(roster, i, trusted, genesis)):
            return trusted
        trusted = roster
    return trusted


def check_evidence(report: Report, bundle: Bundle, roster: Optional[Roster]) -> list[Equivocation]:
    """§19.3 step 5: every piece must verify; returns what the verified pieces show."""
    shown: list[Equivocation] = []
    for i, raw in enumerate(bundle.evidence):
        def run(raw=raw) -> str:
            if roster is None:
                raise Invalid("not checked: no valid roster")
            found = verify_evidence(raw, roster)
            shown.append(found)
            return f"{show(found.origin)} forked at {found.fork_at}: {found.summary}"
        run_check(report.checks, f"evidence {i}", run)
    report.equivocations = [{"origin": e.origin, "fork_at": e.fork_at, "summary": e.summary}
                            for e in shown]
    return shown


def check_record(index: int, record: BundleRecord, roster: Optional[Roster],
                 forks: list[Equivocation], cache: dict) -> dict:
    """§19.3 step 6 for one record; returns its report entry."""
    checks: list[Check] = []
    entry = {"index": index, "id": sha256(record.envelope).hex(), "origin": None, "seq": None,
             "kind": None, "issued_at_ms": None, "fields": [], "checks": checks}
    state: dict = {}

    def signature() -> str:
        header = verify_envelope(record.envelope, roster)
        state["header"] = header
        entry.update(origin=header.origin, seq=header.seq, kind=header.kind,
                     issued_at_ms=header.issued_at_ms)
        return f"{show(header.origin)} seq {header.seq} ({header.kind}) at {header.issued_at_ms}"

    def disclosures() -> str:
        entry["fields"] = check_disclosures(record.disclosures, state["header"])
        return f"{len(entry['fields'])} disclosed: {', '.join(entry['fields']) or 'none'}"

    def checkpoint() -> str:
        header = state["header"]
        cp = memo(cache, record.checkpoint, lambda: verify_checkpoint(record.checkpoint, roster))
        if cp.origin != header.origin:
            raise Invalid(f"checkpoint is {show(cp.origin)}'s, not the record's origin's")
        if cp.size <= header.seq:
            raise Invalid(f"checkpoint size {cp.size} does not cover seq {header.seq}")
        state["checkpoint"] = cp
        return f"size {cp.size}, root {cp.root.hex()}, time {cp.time_ms}"

    def inclusion() -> str:
        cp = state["checkpoint"]
        verify_inclusion(state["header"].seq, cp.size, leaf_hash(record.envelope), record.proof, cp.root)
        return f"leaf {state['header'].seq} of {cp.size}, {len(record.proof)} proof hashes"

    def cosignatures() -> str:
        key = (record.checkpoint, *record.cosignatures)
        witnesses = memo(cache, key, lambda: [verify_cosignature(c, roster, state["checkpoint"])
                                              for c in record.cosignatures])
        state["witnesses"] = set(witnesses)
        return f"{len(witnesses)} valid: {', '.join(map(show, witnesses)) or 'none'}"

    def final() -> str:
        count = len(state["witnesses"])
        if count < roster.witness_quorum:
            raise Invalid(f"not final: {count} of {roster.witness_quorum} required witnesses")
        return f"{count} distinct witnesses (quorum {roster.witness_quorum})"

    def no_equivocation() -> str:
        header = state["header"]
        # §19.3: evidence bounds where the histories part, so every record of the origin fails.
        for fork in forks:
            if fork.origin == header.origin:
                raise Invalid(f"{show(fork.origin)} signed two histories that part at or before "
                              f"position {fork.fork_at}: {fork.summary}")
        return "no evidence against this record"

    unmet = {"header": "the record signature did not verify",
             "checkpoint": "the checkpoint did not verify",
             "witnesses": "the cosignatures did not verify"}
    steps = [("signature", signature, None), ("disclosures", disclosures, "header"),
             ("checkpoint", checkpoint, "header"), ("inclusion", inclusion, "checkpoint"),
             ("cosignatures", cosignatures, "checkpoint"), ("final", final, "witnesses"),
             ("no equivocation", no_equivocation, "header")]
    for name, run, needs in steps:
        if roster is None:
            run = not_checked("no valid roster")
        elif needs and needs not in state:
            run = not_checked(unmet[needs])
        run_check(checks, name, run)
    entry["verified"] = all(c.ok for c in checks)
    return entry


def verify_bundle(parts: list, genesis: Optional[bytes]) -> Report:
    """All checks of §19.3, in order."""
    report = Report()
    report.info.update(genesis=None, genesis_pinned=genesis is not None)
    bundle: Optional[Bundle] = None

    def structure() -> str:
        nonlocal bundle
        bundle = parse_bundle(parts)
        return (f"{len(bundle.rosters)} roster versions, {len(bundle.records)} records, "
                f"{len(bundle.evidence)} pieces of evidence")

    if not run_check(report.checks, "bundle structure", structure):
        return report
    report.info.update(consortium=bundle.consortium, exporter=bundle.exporter,
                       created_ms=bundle.created)
    roster = check_rosters(report, bundle, genesis)
    if roster is not None:
        report.info.update(roster_version=roster.version, witness_quorum=roster.witness_quorum)

    def consortium() -> str:
        if roster is None:
            raise Invalid("not checked: no valid roster")
        if bundle.consortium != roster.consortium:
            raise Invalid("the bundle's consortium is not the roster's")
        return show(bundle.consortium)

    def exporter() -> str:
        if roster is None:
            raise Invalid("not checked: no valid roster")
        kid = verify_sign1_under(bundle.message, roster, bundle.exporter, bundle.created, "bundle")
        return f"{show(bundle.exporter)} key {kid} at {bundle.created}"

    run_check(report.checks, "consortium", consortium)
    run_check(report.checks, "exporter signature", exporter)
    forks = check_evidence(report, bundle, roster)
    cache: dict = {}
    report.records = [check_record(i, r, roster, forks, cache) for i, r in enumerate(bundle.records)]
    return report


# ---------------------------------------------------------------------------------------------
# Output and command line
# ---------------------------------------------------------------------------------------------

def line(check: Check, prefix: str = "") -> str:
    return f"{'ok    ' if check.ok else 'FAILED'} {prefix}{check.check}: {check.detail}"


def print_text(report: Report) -> None:
    for check in report.checks:
        print(line(check))
    for record in report.records:
        where = f"record {record['index']} ({record['id'][:16]}…) "
        for check in record["checks"]:
            print(line(check, where))
    print("VERIFIED" if report.verified() else "FAILED")


def print_json(report: Report) -> None:
    as_dicts = lambda checks: [vars(c) for c in checks]  # noqa: E731
    out = {"verified": report.verified(), "genesis": None, "genesis_pinned": False,
           "consortium": None, "exporter": None, "created_ms": None, "roster_version": None,
           "witness_quorum": None}
    out.update(report.info)
    out["checks"] = as_dicts(report.checks)
    out["records"] = [{**r, "checks": as_dicts(r["checks"])} for r in report.records]
    out["equivocations"] = report.equivocations
    print(json.dumps(out, indent=2, ensure_ascii=False))


def print_unverified(message: str, status: int, as_json: bool) -> int:
    """The report when no check could run; returns the exit status."""
    if as_json:
        print(json.dumps({"verified": False, "error": message}, ensure_ascii=False))
    else:
        print(f"FAILED {message}", file=sys.stderr)
        print("FAILED")
    return status


def parse_genesis(text: str) -> bytes:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise argparse.ArgumentTypeError("expected 64 hex digits")
    return bytes.fromhex(text)


def read_bundle(path: str) -> list:
    """Reads the file and splits the COSE_Sign1; raises Invalid for exit status 2."""
    try:
        if os.path.getsize(path) > BUNDLE_BYTES_MAX:
            raise Invalid(f"bundle too large: more than {BUNDLE_BYTES_MAX} bytes")
        with open(path, "rb") as file:
            data = file.read(BUNDLE_BYTES_MAX + 1)
    except OSError as error:
        raise Invalid(f"cannot read {path}: {error.strerror or error}") from None
    return split_sign1(data, "bundle", BUNDLE_BYTES_MAX)


def main() -> int:
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(errors="backslashreplace")
    parser = argparse.ArgumentParser(description="Verify a tfx audit bundle (SPEC.md §19).")
    parser.add_argument("file")
    parser.add_argument("--genesis", type=parse_genesis,
                        help="trusted roster genesis hash (64 hex digits)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    try:
        parts = read_bundle(args.file)
    except Invalid as error:
        return print_unverified(f"{error}", 2, args.json)
    try:
        report = verify_bundle(parts, args.genesis)
    except Exception as error:  # a bug here must still not look like a verified bundle
        return print_unverified(f"internal error: {type(error).__name__}: {error}", 1, args.json)
    (print_json if args.json else print_text)(report)
    return 0 if report.verified() else 1


if __name__ == "__main__":
    sys.exit(main())
