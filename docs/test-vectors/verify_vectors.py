#!/usr/bin/env python3
"""An independent implementation of Conclave's own layouts around MLS, checked against the
committed vectors: the device key proof, sign-in proof and bot session proof (protocol-v1.json, docs/protocol.md),
the content layer (protocol-v2-content.json) and the reaction layer (protocol-v2-reaction.json,
docs/protocol-v2.md "Content layer" and "Reactions").

It uses only Python's `json` and the `cryptography` package's primitives (Ed25519, HKDF, HMAC,
ChaCha20-Poly1305, SHA-256) and builds every Conclave byte layout from the documents, without
reading the Rust code. If this script and the Rust tests agree, the specification is complete enough for
another implementation to interoperate.

    python3 docs/test-vectors/verify_vectors.py
"""

import base64
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
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

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


def bot_session_proof_input(device_id, unix_seconds):
    return b"conclave/v2/bot-session-proof\x00" + device_id + struct.pack(">Q", unix_seconds)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_32(text):
    """Canonical base64url without padding of exactly 32 bytes, else None."""
    if not isinstance(text, str) or len(text) != 43 or any(c not in B64URL for c in text):
        return None
    data = base64.urlsafe_b64decode(text + "=")
    return data if b64url(data) == text else None


B64URL = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


# --- The content layer (docs/protocol-v2.md, "Content layer") ---

def encode_content(c):
    h = bytes.fromhex
    if c["type"] == "text":
        fields = [("v", 1), ("type", "text"), ("body", c["body"])]
    else:
        fields = [("v", 1), ("type", "file"), ("attachment_id", c["attachment_id"]), ("name", c["name"]),
                  ("media_type", c["media_type"]), ("size", c["size"]), ("key", b64url(h(c["key"]))),
                  ("sha256", b64url(h(c["sha256"])))]
    return ("{" + ",".join(json.dumps(k) + ":" + json.dumps(v, ensure_ascii=False) for k, v in fields) + "}").encode()


def read_content(plaintext):
    """What a reader makes of a plaintext: the vector's `outcome` and what goes with it."""
    malformed = {"outcome": "malformed"}
    try:
        obj = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return malformed
    v = obj.get("v") if isinstance(obj, dict) else None
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        return malformed
    if v != 1:
        return {"outcome": "unsupported_version", "v": v}
    fields = {k: x for k, x in obj.items() if x is not None}  # null is an absent field
    for name in ("type", "body", "attachment_id", "name", "media_type", "key", "sha256"):
        if name in fields and not isinstance(fields[name], str):
            return malformed
    size = fields.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        return malformed
    if "attachment_id" in fields:
        try:
            fields["attachment_id"] = str(uuid.UUID(fields["attachment_id"]))
        except ValueError:
            return malformed
    kind = fields.get("type")
    if kind is None:
        return malformed
    if kind == "text":
        if "body" not in fields:
            return malformed
        return {"outcome": "content", "content": {"type": "text", "body": fields["body"]}}
    if kind == "file":
        key, sha = b64url_32(fields.get("key")), b64url_32(fields.get("sha256"))
        if key is None or sha is None or any(f not in fields for f in ("attachment_id", "name", "size")):
            return malformed
        return {"outcome": "content", "content": {
            "type": "file", "attachment_id": fields["attachment_id"], "name": fields["name"],
            "media_type": fields.get("media_type", "application/octet-stream"), "size": size,
            "key": key.hex(), "sha256": sha.hex()}}
    return {"outcome": "unsupported", "type": kind}


def chunk_aad(index, final):
    return b"conclave/v1/attachment\x00" + struct.pack(">Q", index) + bytes([final])


# --- The reaction layer (docs/protocol-v2.md, "Reactions") ---

def kdf_label(label, context, length):
    full = b"MLS 1.0 " + label
    assert len(full) < 64 and len(context) < 64, "one-byte varints suffice here"
    return struct.pack(">H", length) + bytes([len(full)]) + full + bytes([len(context)]) + context


def expand_with_label(secret, label, context, length):
    return HKDFExpand(hashes.SHA256(), length, kdf_label(label, context, length)).derive(secret)


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

    for i, v in enumerate(vectors["login_proof"]):
        ed_sk = Ed25519PrivateKey.from_private_bytes(h(v["ed25519_secret_key"]))
        check(f"login_proof[{i}] public key", ed_sk.public_key().public_bytes(*RAW).hex() == v["ed25519_public_key"])
        data = login_proof_input(v["email"], uid(v["device_id"]), v["unix_seconds"])
        check(f"login_proof[{i}] input", data.hex() == v["input"])
        check(f"login_proof[{i}] signature", ed_sk.sign(data).hex() == v["signature"])

    for i, v in enumerate(vectors["bot_session_proof"]):
        ed_sk = Ed25519PrivateKey.from_private_bytes(h(v["ed25519_secret_key"]))
        check(f"bot_session_proof[{i}] public key", ed_sk.public_key().public_bytes(*RAW).hex() == v["ed25519_public_key"])
        data = bot_session_proof_input(uid(v["device_id"]), v["unix_seconds"])
        check(f"bot_session_proof[{i}] input", data.hex() == v["input"])
        check(f"bot_session_proof[{i}] signature", ed_sk.sign(data).hex() == v["signature"])

    content = json.loads(path.with_name("protocol-v2-content.json").read_text(encoding="utf-8"))
    for v in content["written"]:
        plaintext = encode_content(v["content"])
        check(f"content written {v['name']!r}", plaintext.hex() == v["plaintext_hex"])
        check(f"content written {v['name']!r} as text", plaintext.decode() == v["plaintext"])
        check(f"content written {v['name']!r} reads back", read_content(plaintext) == {"outcome": "content", "content": v["content"]})
    for v in content["read"]:
        expected = {k: v[k] for k in v if k not in ("name", "plaintext")}
        check(f"content read {v['name']!r}", read_content(v["plaintext"].encode()) == expected)
    files = {v["content"].get("key"): v["content"] for v in content["written"]}
    for v in content["attachments"]:
        key, data = h(v["key"]), bytes(i % 251 for i in range(v["plaintext_len"]))
        pieces = [data[i:i + 65536] for i in range(0, len(data), 65536)] or [b""]
        blob = b""
        for i, (piece, c) in enumerate(zip(pieces, v["chunks"])):
            final = 1 if i == len(pieces) - 1 else 0
            nonce = b"\x00" * 4 + struct.pack(">Q", i)
            sealed = ChaCha20Poly1305(key).encrypt(nonce, piece, chunk_aad(i, final))
            ok = (c["index"], c["final"], c["nonce"], c["aad"], c["sealed_len"], c["sealed_sha256"]) == (
                i, bool(final), nonce.hex(), chunk_aad(i, final).hex(), len(sealed), hashlib.sha256(sealed).hexdigest())
            check(f"attachment {v['name']!r} chunk {i}", ok and c.get("sealed", sealed.hex()) == sealed.hex())
            blob += sealed
        check(f"attachment {v['name']!r} chunks", len(pieces) == len(v["chunks"]))
        check(f"attachment {v['name']!r} blob", (len(blob), hashlib.sha256(blob).hexdigest()) == (v["blob_len"], v["blob_sha256"]))
        listed = files.get(v["key"], {})
        check(f"attachment {v['name']!r} listed by a file content",
              (listed.get("size"), listed.get("sha256")) == (v["plaintext_len"], v["blob_sha256"]))

    reactions = json.loads(path.with_name("protocol-v2-reaction.json").read_text(encoding="utf-8"))
    label = reactions["exporter_label"].encode()
    for i, v in enumerate(reactions["reactions"]):
        check(f"reaction[{i}] derive_secret info", kdf_label(label, b"", 32).hex() == v["derive_secret_info"])
        derived = expand_with_label(h(v["exporter_secret"]), label, b"", 32)
        check(f"reaction[{i}] derived secret", derived.hex() == v["derived_secret"])
        empty_hash = hashlib.sha256(b"").digest()
        check(f"reaction[{i}] export info", kdf_label(b"exported", empty_hash, 32).hex() == v["export_info"])
        key = expand_with_label(derived, b"exported", empty_hash, 32)
        check(f"reaction[{i}] reaction key", key.hex() == v["reaction_key"])
        message_id, reactor = uid(v["message_id"]), uid(v["reactor_user_id"])
        value = v["value"].encode("utf-8")
        check(f"reaction[{i}] value", value.hex() == v["value_hex"])
        tag_key = HKDF(hashes.SHA256(), 32, salt=None, info=b"conclave/v1/reaction-tag").derive(key)
        check(f"reaction[{i}] tag key", tag_key.hex() == v["tag_key"])
        tag_input = message_id + reactor + value
        check(f"reaction[{i}] tag input", tag_input.hex() == v["tag_input"])
        check(f"reaction[{i}] value tag", std_hmac.new(tag_key, tag_input, hashlib.sha256).hexdigest() == v["value_tag"])
        aad = reaction_aad(uid(v["conversation_id"]), v["epoch"], message_id, reactor)
        check(f"reaction[{i}] aad", len(aad) == 73 and aad.hex() == v["aad"])
        ct = ChaCha20Poly1305(key).encrypt(h(v["nonce"]), value, aad)
        check(f"reaction[{i}] ciphertext", ct.hex() == v["ciphertext"])

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
