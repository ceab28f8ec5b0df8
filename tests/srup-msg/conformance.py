#!/usr/bin/env python3
"""srup-msg conformance (SRUP-MSG.md, WIRE.md), stdlib only.

usage: conformance.py SECTION --msg SRUP-MSG --keygen SRUP-KEYGEN --vectors DIR

Sections (each a ctest test of its own):
  vectors    every row of MANIFEST.tsv: decode (with --verify/--decrypt as
             listed) matches NAME.json; encode NAME.json reproduces NAME.bin;
             --hex, stdin, fresh blobs with --encrypt-for.
  generated  a second set made here with our encoder, since the reference
             cannot run here: keys of 2048/3072/4096 bits, edge IDs, 1-byte
             and 65535-byte tokens, NUL bytes, long URLs, blobs. Each message
             is also checked against an independent model of the wire bytes
             and an independent RSA PKCS#1 v1.5 / SHA-256 verification written
             here in Python.
  malformed  truncation at every offset, trailing bytes, bad version/type,
             lengths past the end, bad hex, bad JSON -> exit 2, named.
  badsig     a flipped signature or body byte, wrong key -> exit 1.
  hostile    validly signed messages whose blob lies about its lengths or
             padding -> decode --decrypt exit 1.
  usage      usage, file and key errors -> exit 3.
  terminated INITIATE with pySRUP's terminated url and digest (WIRE.md Q8).

A child that dies of a signal or prints a sanitizer report fails the test.
"""
import argparse
import base64
import concurrent.futures
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

# ---- running the tool ----

ARGS = None
FAILURES = []
CHECKS = [0]
SANITIZER_MARKERS = (b"AddressSanitizer", b"LeakSanitizer", b"UndefinedBehaviorSanitizer",
                     b"runtime error:")


def child_env():
    env = dict(os.environ)
    # A sanitizer report must not pass for exit status 1 or 2.
    for var, code in (("ASAN_OPTIONS", 86), ("UBSAN_OPTIONS", 87), ("LSAN_OPTIONS", 88)):
        opts = env.get(var, "")
        if "exitcode=" not in opts:
            env[var] = (opts + ":" if opts else "") + "exitcode=%d" % code
    return env


ENV = child_env()


class Result:
    def __init__(self, args, p):
        self.args = args
        self.rc = p.returncode
        self.out = p.stdout
        self.err = p.stderr

    def json(self):
        try:
            return json.loads(self.out)
        except ValueError:
            return None

    def what(self):
        return "srup-msg %s -> rc %d, stderr %r" % (
            " ".join(a if len(a) < 80 else a[:40] + "..." for a in self.args),
            self.rc, self.err[-600:].decode(errors="replace"))


def srup_msg(args, stdin=b""):
    p = subprocess.run([ARGS.msg] + args, input=stdin, capture_output=True, env=ENV,
                       timeout=300)
    r = Result(args, p)
    check(r.rc >= 0, "died of signal %d: %s" % (-r.rc if r.rc < 0 else 0, r.what()))
    for marker in SANITIZER_MARKERS:
        check(marker not in r.err, "sanitizer report: " + r.what())
    return r


def check(cond, what):
    CHECKS[0] += 1
    if not cond:
        FAILURES.append(what)
        if len(FAILURES) <= 50:
            print("FAIL: " + what, file=sys.stderr)
    return cond


def parallel(fn, items):
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(fn, items))


# ---- an independent model of the wire format (WIRE.md 1-4) ----

# name -> (code, [(json key, kind)]); kinds: u8, id, lv, blob
TYPES = {
    "generic": (0x00, []),
    "initiate": (0x01, [("url", "lv"), ("digest", "lv")]),
    "response": (0x02, [("status", "u8")]),
    "activate": (0x03, []),
    "action": (0x04, [("action_id", "u8")]),
    "data": (0x05, [("data_id", "lv"), ("data", "lv")]),
    "id_request": (0x06, []),
    "group_add": (0x07, [("device_id", "id"), ("group_id", "lv")]),
    "group_delete": (0x08, [("device_id", "id"), ("group_id", "lv")]),
    "join_request": (0x09, []),
    "join_command": (0x0A, [("device_id", "id")]),
    "hm_join_request": (0x0B, []),
    "hm_join_response": (0x0C, [("encrypted", "blob")]),
    "obs_join_request": (0x0D, [("observer_id", "id")]),
    "obs_join_response": (0x0E, [("encrypted", "blob")]),
    "observe_request": (0x0F, [("joining_device_id", "id"), ("encrypted", "blob")]),
    "resign_request": (0x10, []),
    "terminate_command": (0x11, []),
    "deregister_request": (0x12, []),
    "deregister_command": (0x13, []),
    "group_destroy": (0x14, [("group_id", "lv")]),
}
BLOB_TYPES = [n for n, (_, f) in TYPES.items() if any(k == "blob" for _, k in f)]


def lv16(b):
    assert len(b) <= 0xFFFF
    return struct.pack(">H", len(b)) + b


def model_parts(js):
    """(head, body): head = version|type|seq|sender|lv16(token); the signed
    bytes are head+body and the wire is head+lv16(sig)+body."""
    code, fields = TYPES[js["type"]]
    head = bytes([5, code]) + struct.pack("<Q", int(js["sequence_id"], 16)) + \
        struct.pack("<Q", int(js["sender_id"], 16)) + lv16(bytes.fromhex(js["token"]))
    body = b""
    for key, kind in fields:
        if kind == "u8":
            body += bytes([js[key]])
        elif kind == "id":
            body += struct.pack("<Q", int(js[key], 16))
        else:
            body += lv16(bytes.fromhex(js[key]))
    return head, body


def model_wire(js, sig):
    head, body = model_parts(js)
    if js["type"] == "generic":
        return head
    return head + lv16(sig) + body


def model_sig_offset(js):
    return 20 + len(bytes.fromhex(js["token"]))


# Minimal DER reading for SubjectPublicKeyInfo -> (n, e).
def der_tlv(b, i):
    tag = b[i]
    ln = b[i + 1]
    i += 2
    if ln & 0x80:
        nb = ln & 0x7F
        ln = int.from_bytes(b[i:i + nb], "big")
        i += nb
    return tag, b[i:i + ln], i + ln


def spki_rsa(pem_path):
    text = open(pem_path).read()
    b64 = "".join(l for l in text.splitlines() if l and not l.startswith("-----"))
    der = base64.b64decode(b64)
    _, spki, _ = der_tlv(der, 0)
    _, _, i = der_tlv(spki, 0)           # AlgorithmIdentifier
    tag, bits, _ = der_tlv(spki, i)      # BIT STRING
    assert tag == 0x03
    _, rsakey, _ = der_tlv(bits[1:], 0)  # skip unused-bits byte
    _, n, j = der_tlv(rsakey, 0)
    _, e, _ = der_tlv(rsakey, j)
    return int.from_bytes(n, "big"), int.from_bytes(e, "big")


SHA256_DIGESTINFO = bytes.fromhex("3031300d060960864801650304020105000420")


def model_verify(pub_pem, signed, sig):
    """RSASSA-PKCS1-v1_5 with SHA-256, from the definition (RFC 8017 8.2.2)."""
    n, e = spki_rsa(pub_pem)
    k = (n.bit_length() + 7) // 8
    if len(sig) != k:
        return False
    em = pow(int.from_bytes(sig, "big"), e, n).to_bytes(k, "big")
    t = SHA256_DIGESTINFO + hashlib.sha256(signed).digest()
    return em == b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t


def blob_parts(blob):
    """(K, key, iv, C, P, ciphertext) per WIRE.md 4, trusting nothing."""
    k = struct.unpack("<i", blob[0:4])[0]
    rest = blob[4:]
    key, rest = rest[:k], rest[k:]
    iv, rest = rest[:16], rest[16:]
    c, p = struct.unpack("<ii", rest[:8])
    return k, key, iv, c, p, rest[8:]


def blob_make(k, key, iv, c, p, ct):
    return struct.pack("<i", k) + key + iv + struct.pack("<ii", c, p) + ct


# ---- helpers ----

def vec(path):
    return os.path.join(ARGS.vectors, path)


def manifest():
    rows = []
    with open(vec("MANIFEST.tsv")) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            if line.strip():
                rows.append(dict(zip(header, line.rstrip("\n").split("\t"))))
    return rows


def json_subset(expected, got, where):
    """Every key of expected is in got with the same value."""
    if not check(isinstance(got, dict), "%s: output is not a JSON object" % where):
        return False
    ok = True
    for key, value in expected.items():
        ok &= check(key in got, "%s: key %r missing" % (where, key))
        if key in got:
            ok &= check(got[key] == value, "%s: key %r is %r, expected %r" % (
                where, key, str(got[key])[:80], str(value)[:80]))
    return ok


def public_of(private_path):
    return private_path.replace("_private.pem", "_public.pem")


class Workdir:
    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="srup-msg-test")
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)

    def file(self, name, data):
        p = os.path.join(self.path, name)
        with open(p, "wb") as f:
            f.write(data)
        return p


def keygen(work, name, bits):
    d = os.path.join(work.path, name)
    p = subprocess.run([ARGS.keygen, "--bits", str(bits), "--out", d], capture_output=True,
                       env=ENV, timeout=300)
    if not check(p.returncode == 0, "srup-keygen %d: %r" % (bits, p.stderr)):
        raise SystemExit(1)
    id16 = p.stdout.decode().strip()
    return {"bits": bits, "id": id16, "private": os.path.join(d, "private.pem"),
            "public": os.path.join(d, id16 + ".pem")}


def encode(js, sign=None, encrypt_for=None, extra=()):
    args = ["encode"]
    if sign:
        args += ["--sign", sign]
    if encrypt_for:
        args += ["--encrypt-for", encrypt_for]
    return srup_msg(args + list(extra) + ["-"], json.dumps(js).encode())


def decode(wire, verify=None, decrypt=None, extra=()):
    args = ["decode"]
    if verify:
        args += ["--verify", verify]
    if decrypt:
        args += ["--decrypt", decrypt]
    return srup_msg(args + list(extra) + ["-"], wire)


# ---- section: vectors ----

def section_vectors():
    rows = manifest()
    check(len(rows) == 22, "MANIFEST.tsv has %d rows" % len(rows))
    expect_rc = {"ok": 0, "badsig": 1, "baddecrypt": 1, "malformed": 2}

    def one(row):
        name = row["name"]
        args = ["decode"]
        if row["verify_key"] != "-":
            args += ["--verify", vec(row["verify_key"])]
        if row["decrypt_key"] != "-":
            args += ["--decrypt", vec(row["decrypt_key"])]
        r = srup_msg(args + [vec(row["file"])])
        check(r.rc == expect_rc[row["expect"]], "%s: %s" % (name, r.what()))
        if row["expect"] != "ok":
            return
        want = json.load(open(vec(row["json"])))
        got = r.json()
        json_subset(want, got, "%s decode" % name)
        if row["verify_key"] != "-":
            check(got is not None and got.get("signature_valid") is True,
                  "%s: signature_valid not true" % name)
        wire = open(vec(row["file"]), "rb").read()

        # The independent model reproduces the reference's bytes from the JSON.
        check(model_wire(want, bytes.fromhex(want.get("signature", ""))) == wire,
              "%s: the wire model disagrees with the vector" % name)
        if row["verify_key"] != "-":
            head, body = model_parts(want)
            check(model_verify(vec(row["verify_key"]), head + body,
                               bytes.fromhex(want["signature"])),
                  "%s: the RSA model does not verify the vector" % name)

        # Re-encoding the JSON reproduces the bytes (deterministic signature).
        sign = vec(row["sign_key"]) if row["sign_key"] != "-" else None
        enc = srup_msg(["encode"] + (["--sign", sign] if sign else []) + [vec(row["json"])])
        check(enc.rc == 0 and enc.out == wire, "%s: re-encode differs: %s" % (name, enc.what()))

        # --hex both ways, stdin, hex split over lines as mosquitto_sub prints it.
        enc = srup_msg(["encode", "--hex"] + (["--sign", sign] if sign else []) + ["-"],
                       open(vec(row["json"]), "rb").read())
        check(enc.rc == 0 and enc.out == wire.hex().encode() + b"\n",
              "%s: encode --hex: %s" % (name, enc.what()))
        hex_text = wire.hex()
        split = "\n".join(hex_text[i:i + 64] for i in range(0, len(hex_text), 64)) + "\r\n"
        dec = srup_msg(["decode", "--hex", "-"], split.upper().encode())
        check(dec.rc == 0, "%s: decode --hex split: %s" % (name, dec.what()))
        json_subset({k: v for k, v in want.items() if k != "plaintext"}, dec.json(),
                    "%s decode --hex" % name)
        check(dec.json() is not None and "signature_valid" not in dec.json(),
              "%s: signature_valid without --verify" % name)

        # Blob types: a fresh blob for the same recipient opens to the same plaintext.
        if row["decrypt_key"] != "-":
            recipient_pub = vec(public_of(row["decrypt_key"]))
            fresh = encode(want, sign=sign, encrypt_for=recipient_pub)
            check(fresh.rc == 0, "%s: encode --encrypt-for: %s" % (name, fresh.what()))
            check(fresh.out != wire, "%s: a fresh blob repeats the old one" % name)
            dec = decode(fresh.out, verify=vec(row["verify_key"]),
                         decrypt=vec(row["decrypt_key"]))
            check(dec.rc == 0, "%s: fresh blob decode: %s" % (name, dec.what()))
            got = dec.json() or {}
            check(got.get("plaintext") == want["plaintext"],
                  "%s: fresh blob plaintext %r" % (name, got.get("plaintext")))
            check(got.get("signature_valid") is True, "%s: fresh blob signature" % name)

    parallel(one, rows)


# ---- section: generated ----

def edge_values(case):
    """Field values per case: A small/zero, B large/all-ones, C leading zeros
    and NUL bytes."""
    nul_bytes = bytes(range(256))
    if case == "A":
        return {"seq": "0" * 16, "sender": "0" * 16, "token": b"\x01",
                "u8": 0, "id": "0" * 16, "url": b"/", "digest": b"d",
                "data_id": b"i", "data": b"\x00", "group_id": b"g"}
    if case == "B":
        long_url = b"https://updates.example.com/" + b"fw/" * 2700 + b"image.bin"
        return {"seq": "f" * 16, "sender": "f" * 16, "token": bytes(i & 0xFF for i in range(65535)),
                "u8": 255, "id": "f" * 16, "url": long_url, "digest": b"f" * 64,
                "data_id": b"x" * 300, "data": nul_bytes * 255, "group_id": b"G" * 1000}
    return {"seq": "00000000000000ff", "sender": "0000000000ab00cd", "token": b"\x00tok\x00",
            "u8": 0x60, "id": "000000000000abcd", "url": b"https://h/\x00/x" + b"q" * 5000,
            "digest": b"\x00" * 32, "data_id": b"\x00id", "data": b"PAY\x00\x00LOAD\x00",
            "group_id": b"\x00grp"}


def make_json(type_name, case):
    v = edge_values(case)
    js = {"type": type_name, "version": 5, "sequence_id": v["seq"], "sender_id": v["sender"],
          "token": v["token"].hex()}
    for key, kind in TYPES[type_name][1]:
        if kind == "u8":
            js[key] = v["u8"]
        elif kind == "id":
            js[key] = v["id"]
        elif kind == "lv":
            js[key] = v[key].hex()
    return js


def section_generated():
    with Workdir() as work:
        keys = [keygen(work, "k%d" % b, b) for b in (2048, 3072, 4096)]
        jobs = []
        for key in keys:
            cases = "ABC" if key["bits"] == 2048 else "C"
            for case in cases:
                for type_name in TYPES:
                    if type_name not in BLOB_TYPES:
                        jobs.append((type_name, case, key))
        parallel(lambda j: generated_plain(*j), jobs)

        plaintexts = [b"\x01", b"5e1f0c2d3b4a69788796a5b4c3d2e1f0", b"\x00" * 15,
                      b"\x00\xff" * 8, bytes(i & 0xFF for i in range(4079))]
        jobs = []
        for signer in keys:
            for recipient in keys:
                for type_name in BLOB_TYPES:
                    for pt in (plaintexts if signer is recipient else plaintexts[1:2]):
                        jobs.append((type_name, signer, recipient, pt))
        parallel(lambda j: generated_blob(*j), jobs)

        # Over the largest plaintext a peer can open (WIRE.md G5): refused.
        js = make_json("observe_request", "C")
        js["plaintext"] = (b"a" * 4080).hex()
        r = encode(js, sign=keys[0]["private"], encrypt_for=keys[0]["public"])
        check(r.rc == 2 and b"plaintext" in r.err, "4080-byte plaintext: " + r.what())


def generated_plain(type_name, case, key):
    where = "generated %s case %s %d-bit" % (type_name, case, key["bits"])
    js = make_json(type_name, case)
    signed = type_name != "generic"
    enc = encode(js, sign=key["private"] if signed else None)
    if not check(enc.rc == 0, "%s: encode: %s" % (where, enc.what())):
        return
    wire = enc.out
    # The wire bytes match the model; the signature verifies by the book.
    if signed:
        at = model_sig_offset(js)
        sig_len = struct.unpack(">H", wire[at:at + 2])[0]
        check(sig_len == key["bits"] // 8, "%s: signature length %d" % (where, sig_len))
        sig = wire[at + 2:at + 2 + sig_len]
        head, body = model_parts(js)
        check(model_verify(key["public"], head + body, sig),
              "%s: the RSA model does not verify our signature" % where)
    else:
        sig = b""
    check(model_wire(js, sig) == wire, "%s: wire bytes differ from the model" % where)

    dec = decode(wire, verify=key["public"] if signed else None)
    check(dec.rc == 0, "%s: decode: %s" % (where, dec.what()))
    got = dec.json()
    json_subset(js, got, where)
    if signed and got is not None:
        check(got.get("signature_valid") is True, "%s: signature_valid" % where)
        check(got.get("signature") == sig.hex(), "%s: signature key" % where)
    # The decoded JSON (with its extra keys) encodes to the same bytes.
    if got is not None:
        again = encode(got, sign=key["private"] if signed else None)
        check(again.rc == 0 and again.out == wire, "%s: re-encode differs: %s" % (
            where, again.what()))
    # --hex on both sides.
    hx = encode(js, sign=key["private"] if signed else None, extra=["--hex"])
    check(hx.rc == 0 and hx.out.strip() == wire.hex().encode(), "%s: encode --hex" % where)
    dh = decode(hx.out, extra=["--hex"])
    check(dh.rc == 0, "%s: decode --hex: %s" % (where, dh.what()))
    json_subset(js, dh.json(), where + " (hex)")


def generated_blob(type_name, signer, recipient, pt):
    where = "generated %s signer %d recipient %d plaintext %d bytes" % (
        type_name, signer["bits"], recipient["bits"], len(pt))
    js = make_json(type_name, "C")
    js["plaintext"] = pt.hex()
    enc = encode(js, sign=signer["private"], encrypt_for=recipient["public"])
    if not check(enc.rc == 0, "%s: encode: %s" % (where, enc.what())):
        return
    dec = decode(enc.out, verify=signer["public"], decrypt=recipient["private"])
    check(dec.rc == 0, "%s: decode: %s" % (where, dec.what()))
    got = dec.json() or {}
    check(got.get("plaintext") == pt.hex(), "%s: plaintext differs" % where)
    check(got.get("signature_valid") is True, "%s: signature_valid" % where)
    json_subset({k: v for k, v in js.items() if k != "plaintext"}, got, where)
    blob = bytes.fromhex(got.get("encrypted", ""))
    # The blob's layout (WIRE.md 4): one wrapped key of the recipient's size.
    k, _, _, c, p, ct = blob_parts(blob)
    check(k == recipient["bits"] // 8, "%s: K = %d" % (where, k))
    check(p == len(pt), "%s: P = %d" % (where, p))
    check(c == 16 * (len(pt) // 16 + 1) and len(ct) == c, "%s: C = %d" % (where, c))
    check(len(blob) == 28 + k + c, "%s: blob length" % where)
    # The wire matches the model and re-encoding the ready blob is identical.
    at = model_sig_offset(js)
    sig = enc.out[at + 2:at + 2 + signer["bits"] // 8]
    check(model_wire(got, sig) == enc.out, "%s: wire bytes differ from the model" % where)
    again = encode(got, sign=signer["private"])
    check(again.rc == 0 and again.out == enc.out, "%s: re-encode (ready blob): %s" % (
        where, again.what()))


# ---- section: malformed ----

def expect_malformed(wire, where, field=None, offset=None, extra=()):
    r = decode(wire, extra=extra)
    ok = check(r.rc == 2, "%s: want exit 2: %s" % (where, r.what()))
    ok &= check(r.out == b"", "%s: printed output for a malformed message" % where)
    if field is not None:
        ok &= check(("field '%s'" % field).encode() in r.err,
                    "%s: stderr does not name field %r: %r" % (where, field, r.err))
    if offset is not None:
        ok &= check(("byte offset %d" % offset).encode() in r.err,
                    "%s: stderr does not name offset %d: %r" % (where, offset, r.err))
    return ok


def section_malformed():
    rows = manifest()
    wires = {r["name"]: open(vec(r["file"]), "rb").read() for r in rows}

    # Truncated at every offset, for a vector with a blob and one with lv16 fields.
    jobs = []
    for name in ("observe_request", "initiate", "generic"):
        w = wires[name]
        for cut in range(len(w)):
            jobs.append((w[:cut], "%s cut at %d" % (name, cut)))
    results = parallel(lambda j: decode(j[0]), jobs)
    for (w, where), r in zip(jobs, results):
        check(r.rc == 2, "%s: want exit 2: %s" % (where, r.what()))
        check(r.out == b"", "%s: printed output for a malformed message" % where)
        check(b"byte offset" in r.err and b"field '" in r.err,
              "%s: no field/offset named: %r" % (where, r.err))

    # One byte too many, on every vector; the offset named is where it starts.
    parallel(lambda n: expect_malformed(wires[n] + b"\x00", "%s + trailing byte" % n,
                                        offset=len(wires[n])), list(wires))

    act = wires["activate"]
    for v in (0, 4, 6, 0xFF):
        expect_malformed(bytes([v]) + act[1:], "version %d" % v, "version", 0)
    for t in (0x15, 0x20, 0x21, 0x2F, 0x80, 0xFF):
        expect_malformed(act[:1] + bytes([t]) + act[2:], "type 0x%02x" % t, "type", 1)

    # A length field running past the end.
    w = bytearray(act)
    w[18:20] = b"\xff\xff"
    expect_malformed(bytes(w), "token length 65535", "token", 18)
    w = bytearray(act)
    tl = struct.unpack(">H", act[18:20])[0]
    w[20 + tl:22 + tl] = struct.pack(">H", 300)
    expect_malformed(bytes(w), "signature length 300", "signature", 20 + tl)
    init = wires["initiate"]
    tl = struct.unpack(">H", init[18:20])[0]
    url_at = 22 + tl + 256
    w = bytearray(init)
    w[url_at:url_at + 2] = b"\xff\xf0"
    expect_malformed(bytes(w), "url length past the end", "url", url_at)
    obs = wires["observe_request"]
    tl = struct.unpack(">H", obs[18:20])[0]
    blob_at = 22 + tl + 256 + 8
    w = bytearray(obs)
    w[blob_at:blob_at + 2] = struct.pack(">H", len(obs) - blob_at - 1)
    expect_malformed(bytes(w), "blob length one past the end", "encrypted", blob_at)
    # A signature shorter than any RSA key.
    atl = struct.unpack(">H", act[18:20])[0]
    short = act[:20 + atl] + struct.pack(">H", 16) + act[22 + atl:22 + atl + 16]
    expect_malformed(short, "16-byte signature", "signature")
    expect_malformed(b"", "empty input", "version", 0)
    r = decode(act + b"\0" * (5 * 1024 * 1024))
    check(r.rc == 2 and b"larger than" in r.err, "5 MiB input: " + r.what())

    # Hex input that is not hex.
    expect_malformed(b"05 0z", "non-hex character", extra=["--hex"])
    expect_malformed(act.hex()[:-1].encode(), "odd hex digits", extra=["--hex"])
    expect_malformed(b"0x" + act.hex().encode(), "0x prefix", extra=["--hex"])

    # Malformed JSON for encode: exit 2, naming the key.
    server = vec("keys/server_private.pem")
    base = json.load(open(vec("data.json")))
    blob_base = json.load(open(vec("observe_request.json")))
    cases = []
    for key in ("type", "version", "sequence_id", "sender_id", "token", "data_id", "data"):
        js = dict(base)
        del js[key]
        cases.append((js, key, "missing " + key))
    wrong = [("type", "no_such_type"), ("type", 5), ("version", 4), ("version", "5"),
             ("version", 5.5), ("sequence_id", "0x01"), ("sequence_id", "1" * 17),
             ("sequence_id", ""), ("sequence_id", 12), ("sender_id", "zz"),
             ("token", "abc"), ("token", "zz"), ("token", 7), ("token", "ab" * 65536),
             ("data", "0g"), ("data_id", None)]
    for key, value in wrong:
        js = dict(base)
        js[key] = value
        cases.append((js, key, "%s = %s" % (key, str(value)[:20])))
    for key, value in (("status", 256), ("status", -1), ("status", "80"), ("status", 1.5)):
        js = json.load(open(vec("response.json")))
        js[key] = value
        cases.append((js, key, "%s = %r" % (key, value)))
    js = dict(blob_base)
    del js["encrypted"]
    cases.append((js, "encrypted", "blob type without encrypted or --encrypt-for"))
    js = dict(blob_base)
    js["joining_device_id"] = "c1c2c3c4c5c6c7c8c"
    cases.append((js, "joining_device_id", "17-digit joining_device_id"))
    for js, key, where in cases:
        r = encode(js, sign=server)
        check(r.rc == 2, "encode %s: want exit 2: %s" % (where, r.what()))
        check(("'%s'" % key).encode() in r.err, "encode %s: key not named: %r" % (where, r.err))
        check(r.out == b"", "encode %s: wrote output" % where)
    # --encrypt-for without plaintext names "plaintext".
    js = dict(blob_base)
    del js["plaintext"]
    r = encode(js, sign=server, encrypt_for=vec("keys/observer_public.pem"))
    check(r.rc == 2 and b"'plaintext'" in r.err, "encrypt-for without plaintext: " + r.what())
    for text, where in ((b"", "empty"), (b"{", "unterminated"), (b"[1,2]", "an array"),
                        (b"{} {}", "two objects"), (b"\"activate\"", "a string"),
                        (b"{\"type\": \"activate\", \"type\": \"action\"}", "a duplicate key")):
        r = srup_msg(["encode", "--sign", server, "-"], text)
        check(r.rc == 2, "encode JSON %s: want exit 2: %s" % (where, r.what()))
    # Keys the tool does not know are ignored.
    js = dict(base)
    js["comment"] = {"anything": [1, 2]}
    js["token_text"] = "ignored"
    r = encode(js, sign=vec("keys/device_private.pem"))
    check(r.rc == 0 and r.out == wires["data"], "unknown keys not ignored: " + r.what())


# ---- section: badsig ----

def section_badsig():
    rows = [r for r in manifest() if r["verify_key"] != "-"]

    def one(row):
        name = row["name"]
        wire = open(vec(row["file"]), "rb").read()
        tl = struct.unpack(">H", wire[18:20])[0]
        sig_at = 22 + tl
        flips = [("signature byte 0", sig_at), ("signature byte 255", sig_at + 255),
                 ("sequence_id byte", 2), ("sender_id byte", 17), ("token byte", 20)]
        if len(wire) > sig_at + 256:
            flips.append(("last body byte", len(wire) - 1))
        for what, at in flips:
            w = bytearray(wire)
            w[at] ^= 0x01
            r = decode(bytes(w), verify=vec(row["verify_key"]))
            where = "%s %s flipped" % (name, what)
            check(r.rc == 1, "%s: want exit 1: %s" % (where, r.what()))
            got = r.json()
            check(got is not None and got.get("signature_valid") is False,
                  "%s: JSON with signature_valid false not printed" % where)
            check(b"did not verify" in r.err, "%s: no message" % where)
        # The right bytes, the wrong key.
        other = "keys/device_public.pem" if "server" in row["verify_key"] \
            else "keys/server_public.pem"
        r = decode(wire, verify=vec(other))
        check(r.rc == 1, "%s verified with %s: %s" % (name, other, r.what()))

    parallel(one, rows)

    # WIRE.md G2: an activate relabelled as terminate_command must not verify.
    act = bytearray(open(vec("activate.bin"), "rb").read())
    act[1] = 0x11
    r = decode(bytes(act), verify=vec("keys/server_public.pem"))
    check(r.rc == 1 and (r.json() or {}).get("type") == "terminate_command",
          "activate relabelled as terminate_command: " + r.what())
    # A generic message has no signature to verify.
    r = decode(open(vec("generic.bin"), "rb").read(), verify=vec("keys/server_public.pem"))
    check(r.rc == 1 and (r.json() or {}).get("signature_valid") is False,
          "generic with --verify: " + r.what())
    # A badly signed blob message is not decrypted.
    obs = bytearray(open(vec("observe_request.bin"), "rb").read())
    obs[2] ^= 0xFF
    r = decode(bytes(obs), verify=vec("keys/server_public.pem"),
               decrypt=vec("keys/observer_private.pem"))
    check(r.rc == 1 and "plaintext" not in (r.json() or {"plaintext": 1}),
          "badly signed blob decrypted: " + r.what())

    # A 2048-bit signature checked against a 3072-bit key.
    with Workdir() as work:
        k = keygen(work, "k3072", 3072)
        r = decode(open(vec("activate.bin"), "rb").read(), verify=k["public"])
        check(r.rc == 1, "2048-bit signature against 3072-bit key: " + r.what())


# ---- section: hostile ----

def section_hostile():
    server_priv = vec("keys/server_private.pem")
    server_pub = vec("keys/server_public.pem")
    targets = [("observe_request", vec("keys/observer_private.pem")),
               ("hm_join_response", vec("keys/device_private.pem")),
               ("obs_join_response", vec("keys/device_private.pem"))]

    def variants(blob):
        k, key, iv, c, p, ct = blob_parts(blob)
        assert k == 256 and c == 48 and p == 32 and len(ct) == 48
        out = []
        for bad_k in (-1, -256, -2 ** 31, 0, 255, 257, 512, 2 ** 31 - 1, 0x10000):
            out.append(("K = %d" % bad_k, blob_make(bad_k, key, iv, c, p, ct)))
        for bad_c in (47, 49, 8, 0, -16, -1, 64, 2 ** 31 - 1, 4096 + 16):
            out.append(("C = %d" % bad_c, blob_make(k, key, iv, bad_c, p, ct)))
        # C not a multiple of 16, yet consistent with the blob length.
        out.append(("C = 47, ciphertext cut to match", blob_make(k, key, iv, 47, p, ct[:47])))
        out.append(("C = 40, ciphertext cut to match", blob_make(k, key, iv, 40, p, ct[:40])))
        # C runs past the end of the blob.
        out.append(("C = 64 past the end", blob_make(k, key, iv, 64, p, ct)))
        out.append(("ciphertext one byte short", blob_make(k, key, iv, c, p, ct[:-1])))
        out.append(("one byte after the ciphertext", blob_make(k, key, iv, c, p, ct + b"\0")))
        out.append(("C = 32, ciphertext cut to match", blob_make(k, key, iv, 32, p, ct[:32])))
        for bad_p in (33, 47, 48, 4096, 2 ** 31 - 1, 0, 31, 1, -1, -(2 ** 31)):
            out.append(("P = %d" % bad_p, blob_make(k, key, iv, c, bad_p, ct)))
        # Bad padding: P = 32 leaves a whole block of 0x10; flipping the last
        # byte of the block before it turns the last pad byte into 0x00.
        bad = bytearray(ct)
        bad[31] ^= 0x10
        out.append(("pad byte 0x00", blob_make(k, key, iv, c, p, bytes(bad))))
        bad = bytearray(ct)
        bad[31] ^= 0x10 ^ 0x11
        out.append(("pad byte 0x11", blob_make(k, key, iv, c, p, bytes(bad))))
        bad = bytearray(ct)
        bad[20] ^= 0x01
        out.append(("pad block not uniform", blob_make(k, key, iv, c, p, bytes(bad))))
        # The wrapped key damaged: the unwrap fails or yields a wrong key.
        bad = bytearray(key)
        bad[0] ^= 0x01
        out.append(("wrapped key flipped", blob_make(k, bytes(bad), iv, c, p, ct)))
        out.append(("wrapped key zero", blob_make(k, bytes(256), iv, c, p, ct)))
        out.append(("blob of 4 bytes", blob[:4]))
        out.append(("blob of 27 bytes", blob[:27]))
        out.append(("empty blob", b""))
        return out

    jobs = []
    for type_name, decrypt_key in targets:
        js = json.load(open(vec(type_name + ".json")))
        for what, blob in variants(bytes.fromhex(js["encrypted"])):
            jobs.append((type_name, decrypt_key, js, what, blob))

    def one(job):
        type_name, decrypt_key, js, what, blob = job
        where = "%s, %s" % (type_name, what)
        bad = dict(js)
        bad["encrypted"] = blob.hex()
        del bad["plaintext"]
        enc = encode(bad, sign=server_priv)
        if not check(enc.rc == 0, "%s: encode with a ready blob: %s" % (where, enc.what())):
            return
        r = decode(enc.out, verify=server_pub, decrypt=decrypt_key)
        check(r.rc == 1, "%s: want exit 1: %s" % (where, r.what()))
        got = r.json() or {}
        check(got.get("signature_valid") is True, "%s: signature not valid" % where)
        check("plaintext" not in got, "%s: a plaintext was printed" % where)
        check(b"did not decrypt" in r.err, "%s: no message: %r" % (where, r.err))
        # Without --verify too.
        r = decode(enc.out, decrypt=decrypt_key)
        check(r.rc == 1, "%s (no --verify): want exit 1: %s" % (where, r.what()))

    parallel(one, jobs)

    # The right blob opened with the wrong private key.
    wire = open(vec("observe_request.bin"), "rb").read()
    r = decode(wire, verify=server_pub, decrypt=vec("keys/device_private.pem"))
    check(r.rc == 1 and b"did not decrypt" in r.err, "wrong private key: " + r.what())


# ---- section: usage ----

def section_usage():
    server = vec("keys/server_private.pem")
    act_json = vec("activate.json")
    act_bin = vec("activate.bin")
    with Workdir() as work:
        pkcs1_pub = work.file("pkcs1.pem", b"-----BEGIN RSA PUBLIC KEY-----\n"
                              b"MAoCAwEAAQIDAQAB\n-----END RSA PUBLIC KEY-----\n")
        garbage = work.file("garbage.pem", b"not a key\n")
        open_key = work.file("open.pem", open(server, "rb").read())
        os.chmod(open_key, 0o644)
        cases = [
            ([], "no command"),
            (["frobnicate"], "unknown command"),
            (["decode", "--frob", act_bin], "unknown decode option"),
            (["encode", "--verify", server, act_json], "decode option to encode"),
            (["decode", "--sign", server, act_bin], "encode option to decode"),
            (["decode", act_bin, act_bin], "two inputs"),
            (["decode", "--verify"], "--verify without a file"),
            (["decode", os.path.join(work.path, "missing.bin")], "missing input file"),
            (["decode", "--verify", os.path.join(work.path, "missing.pem"), act_bin],
             "missing key file"),
            (["decode", "--verify", pkcs1_pub, act_bin], "PKCS#1 public key"),
            (["decode", "--verify", server, act_bin], "private key given as public"),
            (["decode", "--decrypt", garbage, vec("observe_request.bin")], "garbage key"),
            (["encode", act_json], "signed type without --sign"),
            (["encode", "--sign", garbage, act_json], "garbage signing key"),
            (["encode", "--sign", server, vec("generic.json")], "--sign for generic"),
            (["encode", "--sign", server, "--encrypt-for",
              vec("keys/device_public.pem"), act_json], "--encrypt-for without a blob"),
        ]
        for args, where in cases:
            r = srup_msg(args)
            check(r.rc == 3, "%s: want exit 3: %s" % (where, r.what()))
            check(len(r.err) > 0, "%s: no message" % where)
        r = srup_msg(["decode", "--verify", pkcs1_pub, act_bin])
        check(b"RSA PUBLIC KEY" in r.err and pkcs1_pub.encode() in r.err,
              "PKCS#1 refusal message: %r" % r.err)
        # Loose permissions on a private key: a warning for this tool.
        r = srup_msg(["encode", "--sign", open_key, act_json])
        check(r.rc == 0 and r.out == open(act_bin, "rb").read(), "0644 key: " + r.what())
        check(b"too open" in r.err, "0644 key: no warning: %r" % r.err)
    for args in (["--help"], ["decode", "--help"], ["encode", "--help"]):
        r = srup_msg(args)
        check(r.rc == 0 and b"--encrypt-for" in r.out and b"--verify" in r.out,
              "%s: %s" % (args, r.what()))
    r = srup_msg(["--version"])
    check(r.rc == 0 and r.out.startswith(b"srup-msg "), "--version: " + r.what())
    # Reading from a file, from '-' and with no argument.
    wire = open(act_bin, "rb").read()
    a = srup_msg(["decode", act_bin])
    b = srup_msg(["decode", "-"], wire)
    c = srup_msg(["decode"], wire)
    check(a.rc == b.rc == c.rc == 0 and a.out == b.out == c.out, "file, '-' and stdin agree")


# ---- section: terminated ----

def section_terminated():
    """INITIATE as pySRUP builds it (WIRE.md Q8): url and digest each sent
    with their C terminator, length() + 1 bytes. decode accepts it, keeps
    the wire bytes in url/digest (so the JSON encodes back to the same
    message), and shows the text before the terminator in url_text and
    digest_text with url_terminated/digest_terminated. Any other NUL gets
    no such reading, and an unterminated message no new key."""
    url = b"https://updates.example.com/fw/v1.2.3.bin"
    digest = hashlib.sha256(b"firmware image").hexdigest().encode()
    raw = hashlib.sha256(b"firmware image").digest()
    with Workdir() as work:
        key = keygen(work, "k", 2048)
        cases = [  # (name, url field, digest field, url terminated, digest terminated)
            ("both terminated", url + b"\0", digest + b"\0", True, True),
            ("url terminated", url + b"\0", digest, True, False),
            ("digest terminated", url, digest + b"\0", False, True),
            ("raw digest terminated", url, raw + b"\0", False, True),
            ("neither", url, digest, False, False),
            ("two NULs after the url", url + b"\0\0", digest + b"\0\0", False, False),
            ("NUL inside the url", b"https://a/\0b\0", b"\0" + digest, False, False),
        ]

        def one(c):
            name, u, d, u_term, d_term = c
            js = {"type": "initiate", "version": 5, "sequence_id": "0000000000000001",
                  "sender_id": "00000000000000aa", "token": b"tok-initiate".hex(),
                  "url": u.hex(), "digest": d.hex()}
            enc = encode(js, sign=key["private"])
            if not check(enc.rc == 0, "%s: encode: %s" % (name, enc.what())):
                return
            wire = enc.out
            at = model_sig_offset(js)
            sig = wire[at + 2:at + 2 + struct.unpack(">H", wire[at:at + 2])[0]]
            check(model_wire(js, sig) == wire and wire.endswith(lv16(u) + lv16(d)),
                  "%s: wire bytes differ from pySRUP's layout" % name)
            dec = decode(wire, verify=key["public"])
            check(dec.rc == 0, "%s: decode: %s" % (name, dec.what()))
            got = dec.json()
            if not check(isinstance(got, dict), "%s: no JSON" % name):
                return
            check(got.get("signature_valid") is True, "%s: signature_valid" % name)
            check(got.get("url") == u.hex() and got.get("digest") == d.hex(),
                  "%s: url/digest are not the wire bytes: %r" % (name, got))
            if u_term:
                check(got.get("url_terminated") is True and
                      got.get("url_text") == url.decode(),
                      "%s: url shown as %r" % (name, {k: got.get(k) for k in
                                                      ("url_text", "url_terminated")}))
            else:
                check("url_terminated" not in got, "%s: url_terminated given" % name)
                if u == url:
                    check(got.get("url_text") == url.decode(), "%s: url_text" % name)
                else:
                    check("url_text" not in got, "%s: url_text %r" % (name, got.get("url_text")))
            if d_term:
                check(got.get("digest_terminated") is True, "%s: digest_terminated" % name)
                if d[:-1] == digest:
                    check(got.get("digest_text") == digest.decode(),
                          "%s: digest_text %r" % (name, got.get("digest_text")))
            else:
                check("digest_terminated" not in got, "%s: digest_terminated given" % name)
            # The JSON, extras and all, encodes back to the same message.
            again = encode(got, sign=key["private"])
            check(again.rc == 0 and again.out == wire, "%s: re-encode differs: %s" % (
                name, again.what()))

        parallel(one, cases)
        # The reference's own INITIATE (no terminator) shows no new key.
        got = decode(open(vec("initiate.bin"), "rb").read()).json() or {}
        check(not any(k.endswith("_terminated") for k in got),
              "reference initiate: %r" % sorted(got))


SECTIONS = {
    "vectors": section_vectors,
    "terminated": section_terminated,
    "generated": section_generated,
    "malformed": section_malformed,
    "badsig": section_badsig,
    "hostile": section_hostile,
    "usage": section_usage,
}


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("section", choices=sorted(SECTIONS))
    ap.add_argument("--msg", required=True)
    ap.add_argument("--keygen", required=True)
    ap.add_argument("--vectors", required=True)
    ARGS = ap.parse_args()
    SECTIONS[ARGS.section]()
    if FAILURES:
        print("%s: %d of %d checks failed" % (ARGS.section, len(FAILURES), CHECKS[0]),
              file=sys.stderr)
        return 1
    print("%s: %d checks passed" % (ARGS.section, CHECKS[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
