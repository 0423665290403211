#!/usr/bin/env python3
"""An independent implementation of the Conclave layouts that protocol v2 keeps from v1 (device
key proof, sign-in proof, reaction sealing and tag), checked against protocol-v1.json.

It uses only the Python `cryptography` package's primitives (Ed25519, HKDF, HMAC,
ChaCha20-Poly1305) and builds every Conclave byte layout from docs/protocol.md, without reading
the Rust code. If this script and the Rust tests agree, the specification is complete enough for
another implementation to interoperate.

    python3 docs/test-vectors/verify_vectors.py
"""

import hmac as std_hmac
import hashlib
import json
import struct
import sys
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


def u32(n):
    return struct.pack(">I", n)


def uid(text):
    return uuid.UUID(text).bytes


# --- Conclave layouts (docs/protocol.md, "Byte layouts") ---

def device_key_input(ed_pk):
    return b"conclave/v2/device-key\x00" + ed_pk


def reaction_aad(conversation_id, generation, message_id, reactor_user_id):
    return b"conclave/v1/reaction\x00" + conversation_id + u32(generation) + message_id + reactor_user_id


def login_proof_input(email, device_id, unix_seconds):
    data = email.encode("utf-8")
    return b"conclave/v1/login-proof\x00" + u32(len(data)) + data + device_id + struct.pack(">Q", unix_seconds)


def main():
    path = Path(__file__).with_name("protocol-v1.json")
    vectors = json.loads(path.read_text(encoding="utf-8"))
    h = bytes.fromhex
    passed = failed = 0

    def check(name, ok):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
            print(f"FAILED: {name}")

    for i, v in enumerate(vectors["device_key"]):
        ed_sk = Ed25519PrivateKey.from_private_bytes(h(v["ed25519_secret_key"]))
        ed_pk = ed_sk.public_key().public_bytes(*RAW)
        check(f"device_key[{i}] public key", ed_pk.hex() == v["ed25519_public_key"])
        data = device_key_input(ed_pk)
        check(f"device_key[{i}] input", data.hex() == v["input"])
        check(f"device_key[{i}] signature", ed_sk.sign(data).hex() == v["signature"])

    for i, v in enumerate(vectors["reaction"]):
        key = h(v["conversation_key"])
        message_id, reactor = uid(v["message_id"]), uid(v["reactor_user_id"])
        tag_key = HKDF(hashes.SHA256(), 32, salt=None, info=b"conclave/v1/reaction-tag").derive(key)
        check(f"reaction[{i}] tag key", tag_key.hex() == v["tag_key"])
        tag_input = message_id + reactor + v["value"].encode("utf-8")
        check(f"reaction[{i}] tag input", tag_input.hex() == v["tag_input"])
        check(f"reaction[{i}] value tag", std_hmac.new(tag_key, tag_input, hashlib.sha256).hexdigest() == v["value_tag"])
        aad = reaction_aad(uid(v["conversation_id"]), v["generation"], message_id, reactor)
        check(f"reaction[{i}] aad", aad.hex() == v["aad"])
        ct = ChaCha20Poly1305(key).encrypt(h(v["nonce"]), v["value"].encode("utf-8"), aad)
        check(f"reaction[{i}] ciphertext", ct.hex() == v["ciphertext"])

    for i, v in enumerate(vectors["login_proof"]):
        ed_sk = Ed25519PrivateKey.from_private_bytes(h(v["ed25519_secret_key"]))
        check(f"login_proof[{i}] public key", ed_sk.public_key().public_bytes(*RAW).hex() == v["ed25519_public_key"])
        data = login_proof_input(v["email"], uid(v["device_id"]), v["unix_seconds"])
        check(f"login_proof[{i}] input", data.hex() == v["input"])
        check(f"login_proof[{i}] signature", ed_sk.sign(data).hex() == v["signature"])

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
