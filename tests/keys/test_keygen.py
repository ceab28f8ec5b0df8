#!/usr/bin/env python3
"""srup-keygen: files, modes and formats it writes, the ID it prints, and
its refusals. With srup-msg given, also checks that the key pair signs and
verifies and has the requested size.

usage: test_keygen.py SRUP-KEYGEN [SRUP-MSG]
"""
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

KEYGEN = sys.argv[1]
MSG = sys.argv[2] if len(sys.argv) > 2 else None
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL: " + what, file=sys.stderr)


def run(args, stdin=None):
    p = subprocess.run(args, input=stdin, capture_output=True, timeout=300)
    check(p.returncode >= 0, "%s died of signal %d" % (args, -p.returncode))
    for marker in (b"AddressSanitizer", b"LeakSanitizer", b"runtime error:"):
        check(marker not in p.stderr, "%s: sanitizer report: %s" % (args, p.stderr[-2000:]))
    return p


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def first_line(path):
    with open(path) as f:
        return f.readline().strip()


def key_bits(directory, id16):
    """Sign an activate message with the new private key, verify it with the
    public half; the signature is as long as the modulus."""
    msg = {"type": "activate", "version": 5, "sequence_id": "0000000000000001",
           "sender_id": id16, "token": "6b6579"}
    enc = run([MSG, "encode", "--sign", os.path.join(directory, "private.pem")],
              json.dumps(msg).encode())
    check(enc.returncode == 0, "encode with new key: %s" % enc.stderr)
    dec = run([MSG, "decode", "--verify", os.path.join(directory, id16 + ".pem")], enc.stdout)
    check(dec.returncode == 0, "verify with new public key: %s" % dec.stderr)
    out = json.loads(dec.stdout)
    check(out.get("signature_valid") is True, "signature_valid with new key pair")
    return len(out["signature"]) * 4


def main():
    work = tempfile.mkdtemp(prefix="srup-keygen-test")
    try:
        # Explicit ID with leading zeros, 3072 bits; the directory is created.
        d = os.path.join(work, "a")
        p = run([KEYGEN, "--bits", "3072", "--id", "00AB", "--out", d])
        check(p.returncode == 0, "keygen --id 00AB: %r" % p.stderr)
        check(p.stdout == b"00000000000000ab\n", "printed ID: %r" % p.stdout)
        priv = os.path.join(d, "private.pem")
        pub = os.path.join(d, "00000000000000ab.pem")
        check(mode_of(priv) == 0o600, "private.pem mode %o" % mode_of(priv))
        check(mode_of(pub) == 0o644, "public mode %o" % mode_of(pub))
        check(first_line(priv) == "-----BEGIN PRIVATE KEY-----", "private.pem is PKCS#8")
        check(first_line(pub) == "-----BEGIN PUBLIC KEY-----", "public is SPKI")
        check(sorted(os.listdir(d)) == ["00000000000000ab.pem", "private.pem"],
              "no stray files: %s" % os.listdir(d))
        if MSG:
            check(key_bits(d, "00000000000000ab") == 3072, "3072-bit key")

        # Existing files are not replaced without --force.
        before = open(priv, "rb").read()
        p = run([KEYGEN, "--id", "ab", "--out", d])
        check(p.returncode == 3, "refuse to overwrite: rc %d" % p.returncode)
        check(b"exists" in p.stderr, "overwrite message: %r" % p.stderr)
        check(open(priv, "rb").read() == before, "private.pem untouched")
        p = run([KEYGEN, "--id", "ab", "--force", "--out", d])
        check(p.returncode == 0, "--force: %r" % p.stderr)
        check(open(priv, "rb").read() != before, "--force wrote a new key")
        if MSG:
            check(key_bits(d, "00000000000000ab") == 2048, "default is 2048 bits")

        # Random ID: 16 hex digits, not zero, names the public file.
        d2 = os.path.join(work, "b")
        p = run([KEYGEN, "--out", d2])
        check(p.returncode == 0, "keygen random ID: %r" % p.stderr)
        printed = p.stdout.decode().strip()
        check(re.fullmatch(r"[0-9a-f]{16}", printed) is not None, "random ID %r" % printed)
        check(printed != "0" * 16, "random ID is not zero")
        check(os.path.exists(os.path.join(d2, printed + ".pem")), "public file named by ID")

        # Usage and file errors: exit 3, with a message.
        bad = [
            [KEYGEN],
            [KEYGEN, "--out"],
            [KEYGEN, "--bits", "1024", "--out", os.path.join(work, "c")],
            [KEYGEN, "--bits", "2049", "--out", os.path.join(work, "c")],
            [KEYGEN, "--id", "0x12", "--out", os.path.join(work, "c")],
            [KEYGEN, "--id", "12345678901234567", "--out", os.path.join(work, "c")],
            [KEYGEN, "--id", "", "--out", os.path.join(work, "c")],
            [KEYGEN, "--out", os.path.join(work, "c"), "extra"],
            [KEYGEN, "--frobnicate", "--out", os.path.join(work, "c")],
            [KEYGEN, "--out", os.path.join(priv, "sub")],  # under a file
            [KEYGEN, "--owner", "no-such-user-srup", "--out", os.path.join(work, "c")],
            [KEYGEN, "--owner", "root:no-such-group-srup", "--out", os.path.join(work, "c")],
            [KEYGEN, "--owner", ":root", "--out", os.path.join(work, "c")],
        ]
        for args in bad:
            p = run(args)
            check(p.returncode == 3, "%s: rc %d, want 3" % (args[1:], p.returncode))
            check(len(p.stderr) > 0, "%s: a message on stderr" % (args[1:],))
        check(not os.path.exists(os.path.join(work, "c")), "nothing written on usage errors")

        # --owner: the service user gets the key (root can give it away).
        if os.geteuid() == 0:
            import grp
            import pwd
            nobody = pwd.getpwnam("nobody")
            nogroup = grp.getgrnam("nogroup")
            d3 = os.path.join(work, "owned")
            p = run([KEYGEN, "--id", "5", "--owner", "nobody:nogroup", "--out", d3])
            check(p.returncode == 0, "--owner nobody:nogroup: %r" % p.stderr)
            for path in (d3, os.path.join(d3, "private.pem"),
                         os.path.join(d3, "0000000000000005.pem")):
                st = os.stat(path)
                check((st.st_uid, st.st_gid) == (nobody.pw_uid, nogroup.gr_gid),
                      "%s owned by nobody:nogroup, not %d:%d" % (path, st.st_uid, st.st_gid))
            check(mode_of(os.path.join(d3, "private.pem")) == 0o600, "owned key still 0600")
            check(mode_of(d3) == 0o700, "owned directory 0700")
            # A directory that was there stays whose it was; USER alone
            # means USER's own group.
            d4 = os.path.join(work, "existing")
            os.mkdir(d4, 0o755)
            p = run([KEYGEN, "--id", "6", "--owner", "nobody", "--out", d4])
            check(p.returncode == 0, "--owner nobody: %r" % p.stderr)
            check(os.stat(d4).st_uid == 0, "an existing directory is not given away")
            st = os.stat(os.path.join(d4, "private.pem"))
            check((st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid),
                  "--owner USER: USER's group")

        p = run([KEYGEN, "--help"])
        check(p.returncode == 0 and b"--bits" in p.stdout and b"--out" in p.stdout,
              "--help documents the options")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("%d failure(s)" % len(failures), file=sys.stderr)
        return 1
    print("srup-keygen: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
