#!/usr/bin/env python3
"""Protocol v2's own parts (docs/protocol.md: device credentials and safety numbers), written
from the document alone with Python's `cryptography` and `hashlib`, not from the SDK's code.
Prints the test vectors that client/src/mls/vectors.rs checks the SDK against:

    python3 docs/test-vectors/protocol-v2-identity.py > docs/test-vectors/protocol-v2-identity.json
"""
import hashlib
import json
import uuid

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def raw_public(seed: bytes) -> bytes:
    key = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def credential(identity_seed: bytes, user: uuid.UUID, device: uuid.UUID, leaf_public: bytes) -> bytes:
    signed = b"conclave/v2/device-credential\x00" + user.bytes + device.bytes + leaf_public
    signature = Ed25519PrivateKey.from_private_bytes(identity_seed).sign(signed)
    return b"CNC2" + bytes([1]) + user.bytes + device.bytes + raw_public(identity_seed) + signature


def fingerprint(user: uuid.UUID, identity_public: bytes) -> str:
    digest = hashlib.sha512(b"\x00\x00" + identity_public + user.bytes).digest()
    for _ in range(5199):
        digest = hashlib.sha512(digest + identity_public).digest()
    return "".join("%05d" % (int.from_bytes(digest[i:i + 5], "big") % 100000) for i in range(0, 30, 5))


def safety_number(a, b) -> str:
    first, second = (a, b) if a[0].bytes <= b[0].bytes else (b, a)
    return fingerprint(*first) + fingerprint(*second)


identity_seed = bytes(range(32))
leaf_seed = bytes([0x42] * 32)
other_seed = bytes([0x07] * 32)
user = uuid.UUID("0190a5e1-0000-7000-8000-000000000001")
device = uuid.UUID("0190a5e1-0000-7000-8000-0000000000d1")
other = uuid.UUID("0190a5e1-0000-7000-8000-000000000002")

print(json.dumps({
    "identity_seed": identity_seed.hex(),
    "identity_public": raw_public(identity_seed).hex(),
    "leaf_seed": leaf_seed.hex(),
    "leaf_public": raw_public(leaf_seed).hex(),
    "user_id": str(user),
    "device_id": str(device),
    "credential": credential(identity_seed, user, device, raw_public(leaf_seed)).hex(),
    "other_user_id": str(other),
    "other_identity_seed": other_seed.hex(),
    "fingerprint": fingerprint(user, raw_public(identity_seed)),
    "other_fingerprint": fingerprint(other, raw_public(other_seed)),
    "safety_number": safety_number((user, raw_public(identity_seed)), (other, raw_public(other_seed))),
}, indent=2))
