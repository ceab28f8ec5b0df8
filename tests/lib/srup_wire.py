"""SRUP messages at the byte level (shared/spec/WIRE.md sections 1-2), for
tests that need many signed messages quickly: one template is built with
srup-msg (blob sealed once), then copies with a new sequence ID and token
are signed here (RSASSA-PKCS1-v1_5, SHA-256, python3-cryptography)."""
import struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding


def split(msg):
    """(head, token, signature, body) of a signed message; head is
    version, type, sequence ID and sender ID (18 bytes)."""
    tlen = struct.unpack(">H", msg[18:20])[0]
    token = msg[20:20 + tlen]
    at = 20 + tlen
    slen = struct.unpack(">H", msg[at:at + 2])[0]
    return msg[:18], token, msg[at + 2:at + 2 + slen], msg[at + 2 + slen:]


def fields(msg):
    head, token, _sig, body = split(msg)
    return {"type": head[1], "seq": struct.unpack("<Q", head[2:10])[0],
            "sender": struct.unpack("<Q", head[10:18])[0], "token": token, "body": body}


def load_key(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def resign(template, key, seq, token, body=None):
    """template with sequence ID seq and token (bytes), and body if given,
    signed with key."""
    head, _old, _sig, old_body = split(template)
    body = old_body if body is None else body
    head = head[:2] + struct.pack("<Q", seq) + head[10:18]
    presign = head + struct.pack(">H", len(token)) + token + body
    sig = key.sign(presign, padding.PKCS1v15(), hashes.SHA256())
    return head + struct.pack(">H", len(token)) + token + struct.pack(">H", len(sig)) + sig + body


def with_joining_device(observe_request, device_id):
    """The body of an OBSERVE_REQ naming another joining device."""
    body = split(observe_request)[3]
    return struct.pack("<Q", device_id) + body[8:]
