#!/usr/bin/env python3
"""An independent implementation of Conclave protocol v1, checked against protocol-v1.json.

It uses only the Python `cryptography` package's primitives (X25519, Ed25519, HKDF, HMAC,
ChaCha20-Poly1305) and builds HPKE (RFC 9180, base mode, DHKEM(X25519, HKDF-SHA256),
HKDF-SHA256, ChaCha20-Poly1305) and every Conclave byte layout from docs/protocol.md, without
reading the Rust code. If this script and the Rust tests agree, the specification is complete
enough for another implementation to interoperate.

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
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


def u32(n):
    return struct.pack(">I", n)


def uid(text):
    return uuid.UUID(text).bytes


# --- Conclave layouts (docs/protocol.md, "Byte layouts") ---

def device_binding_input(x_pk, ed_pk):
    return b"conclave/v1/device-binding\x00" + x_pk + ed_pk


def key_wrap_info(conversation_id, generation):
    return b"conclave/v1/key-wrap\x00" + conversation_id + u32(generation)


def message_aad(conversation_id, generation, sender_device_id, client_message_id):
    return b"conclave/v1/message\x00" + conversation_id + u32(generation) + sender_device_id + client_message_id


def message_signature_input(aad, nonce, ciphertext):
    out = b"conclave/v1/message-signature\x00"
    for part in (aad, nonce, ciphertext):
        out += u32(len(part)) + part
    return out


def reaction_aad(conversation_id, generation, message_id, reactor_user_id):
    return b"conclave/v1/reaction\x00" + conversation_id + u32(generation) + message_id + reactor_user_id


def login_proof_input(email, device_id, unix_seconds):
    data = email.encode("utf-8")
    return b"conclave/v1/login-proof\x00" + u32(len(data)) + data + device_id + struct.pack(">Q", unix_seconds)


# --- HPKE, RFC 9180, from its pseudocode ---

KEM_SUITE = b"KEM" + struct.pack(">H", 0x0020)
HPKE_SUITE = b"HPKE" + struct.pack(">HHH", 0x0020, 0x0001, 0x0003)


def extract(salt, ikm):
    return std_hmac.new(salt, ikm, hashlib.sha256).digest()  # empty salt == HashLen zeros


def expand(prk, info, length):
    return HKDFExpand(hashes.SHA256(), length, info).derive(prk)


def labeled_extract(suite, salt, label, ikm):
    return extract(salt, b"HPKE-v1" + suite + label + ikm)


def labeled_expand(suite, prk, label, info, length):
    return expand(prk, struct.pack(">H", length) + b"HPKE-v1" + suite + label + info, length)


def clamp(sk):
    """RFC 7748 clamping; RFC 9180 §7.1.2 serializes X25519 private keys clamped."""
    b = bytearray(sk)
    b[0] &= 248
    b[31] = (b[31] & 127) | 64
    return bytes(b)


def derive_key_pair(ikm):
    prk = labeled_extract(KEM_SUITE, b"", b"dkp_prk", ikm)
    sk = X25519PrivateKey.from_private_bytes(labeled_expand(KEM_SUITE, prk, b"sk", b"", 32))
    return sk, sk.public_key().public_bytes(*RAW)


def shared_secret(dh, enc, pk_r):
    prk = labeled_extract(KEM_SUITE, b"", b"eae_prk", dh)
    return labeled_expand(KEM_SUITE, prk, b"shared_secret", enc + pk_r, 32)


def key_schedule_base(secret_in, info):
    psk_id_hash = labeled_extract(HPKE_SUITE, b"", b"psk_id_hash", b"")
    info_hash = labeled_extract(HPKE_SUITE, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash
    secret = labeled_extract(HPKE_SUITE, secret_in, b"secret", b"")
    key = labeled_expand(HPKE_SUITE, secret, b"key", context, 32)
    base_nonce = labeled_expand(HPKE_SUITE, secret, b"base_nonce", context, 12)
    return key, base_nonce


def hpke_seal_base(pk_r, info, aad, pt, ikm_e):
    sk_e, enc = derive_key_pair(ikm_e)
    dh = sk_e.exchange(X25519PublicKey.from_public_bytes(pk_r))
    key, nonce = key_schedule_base(shared_secret(dh, enc, pk_r), info)
    return enc, ChaCha20Poly1305(key).encrypt(nonce, pt, aad)  # sequence 0: nonce = base_nonce


def hpke_open_base(sk_r, enc, info, aad, ct):
    pk_r = sk_r.public_key().public_bytes(*RAW)
    dh = sk_r.exchange(X25519PublicKey.from_public_bytes(enc))
    key, nonce = key_schedule_base(shared_secret(dh, enc, pk_r), info)
    return ChaCha20Poly1305(key).decrypt(nonce, ct, aad)


# --- checks ---

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

    for i, v in enumerate(vectors["device_binding"]):
        x_sk = X25519PrivateKey.from_private_bytes(h(v["x25519_secret_key"]))
        ed_sk = Ed25519PrivateKey.from_private_bytes(h(v["ed25519_secret_key"]))
        x_pk, ed_pk = x_sk.public_key().public_bytes(*RAW), ed_sk.public_key().public_bytes(*RAW)
        check(f"device_binding[{i}] public keys", (x_pk.hex(), ed_pk.hex()) == (v["x25519_public_key"], v["ed25519_public_key"]))
        data = device_binding_input(x_pk, ed_pk)
        check(f"device_binding[{i}] input", data.hex() == v["input"])
        check(f"device_binding[{i}] signature", ed_sk.sign(data).hex() == v["signature"])

    for i, v in enumerate(vectors["key_wrap"]):
        sk_r = X25519PrivateKey.from_private_bytes(h(v["recipient_x25519_secret_key"]))
        pk_r = sk_r.public_key().public_bytes(*RAW)
        check(f"key_wrap[{i}] recipient public key", pk_r.hex() == v["recipient_x25519_public_key"])
        info = key_wrap_info(uid(v["conversation_id"]), v["generation"])
        check(f"key_wrap[{i}] info", info.hex() == v["info"])
        sk_e, _ = derive_key_pair(h(v["ikm_e"]))
        check(f"key_wrap[{i}] skE", clamp(sk_e.private_bytes_raw()).hex() == v["ephemeral_secret_key"])
        enc, ct = hpke_seal_base(pk_r, info, h(v["aad"]), h(v["conversation_key"]), h(v["ikm_e"]))
        check(f"key_wrap[{i}] enc", enc.hex() == v["encapsulated_key"])
        check(f"key_wrap[{i}] wrapped_key", ct.hex() == v["wrapped_key"] and len(ct) == 48)
        opened = hpke_open_base(sk_r, h(v["encapsulated_key"]), info, h(v["aad"]), h(v["wrapped_key"]))
        check(f"key_wrap[{i}] opens", opened.hex() == v["conversation_key"])

    for i, v in enumerate(vectors["message"]):
        aad = message_aad(uid(v["conversation_id"]), v["generation"], uid(v["sender_device_id"]), uid(v["client_message_id"]))
        check(f"message[{i}] aad", aad.hex() == v["aad"])
        ct = ChaCha20Poly1305(h(v["conversation_key"])).encrypt(h(v["nonce"]), h(v["plaintext"]), aad)
        check(f"message[{i}] ciphertext", ct.hex() == v["ciphertext"])
        signed = message_signature_input(aad, h(v["nonce"]), ct)
        check(f"message[{i}] signature input", signed.hex() == v["signature_input"])
        ed_sk = Ed25519PrivateKey.from_private_bytes(h(v["sender_ed25519_secret_key"]))
        check(f"message[{i}] signature", ed_sk.sign(signed).hex() == v["signature"])
        Ed25519PublicKey.from_public_bytes(h(v["sender_ed25519_public_key"])).verify(h(v["signature"]), signed)

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
