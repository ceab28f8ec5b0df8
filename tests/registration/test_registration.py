"""srup-register against the key service stand-in (keyex_standin.py).

    test_registration.py BUILD_DIR CASE

Each case starts a stand-in of its own over HTTPS (CAs made for the run),
writes an observer's or a device's configuration with the placeholders the
shipped files have, runs srup-register as a program and checks its exit
status, its output and the files: what a failure must leave untouched is
compared byte for byte (content, mode, owner, mtime) before and after.
"""
import base64
import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from keyex_standin import KeyService, bare_key  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from cryptography import x509  # noqa: E402

BUILD = None
ROOTS = []


def fail(msg):
    raise AssertionError(msg)


class Bed:
    """A root of its own: etc/<kind>.conf, etc/<kind>/ (keys), state/."""

    def __init__(self, kind="observer", sim_socket=None):
        self.kind = kind
        self.root = tempfile.mkdtemp(prefix="srup-reg.")
        ROOTS.append(self.root)
        os.chmod(self.root, 0o755)  # the service user of --owner must get in
        self.etc = os.path.join(self.root, "etc")
        self.state = os.path.join(self.root, "state")
        os.mkdir(self.etc, 0o755)
        self.keys = os.path.join(self.etc, kind)
        self.conf = os.path.join(self.etc, kind + ".conf")
        self.dropin = self.conf + ".d/50-registration.conf"
        self.sim_socket = sim_socket or os.path.join(self.root, "sim.sock")
        self.write_conf("0")

    def write_conf(self, ident):
        lines = [
            "# the shipped file's placeholders",
            "[identity]", "id = %s" % ident,
            "private_key = %s/private.pem" % self.keys,
            "[server]", "id = 0", "public_key = /etc/srup/server-public.pem",
            "[mqtt]", "broker = mqtts://c2.example.net:8883", "ca_file = /etc/srup/ca.pem",
        ]
        if self.kind == "observer":
            lines += ["[observation]", "channel = sim"]
        lines += ["[sim]", "socket = %s" % self.sim_socket]
        lines += ["[state]", "dir = %s" % self.state]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def keygen(self):
        """An identity made beforehand, as srup-keygen makes it."""
        out = subprocess.run([os.path.join(BUILD, "keys", "srup-keygen"), "--out", self.keys],
                             check=True, capture_output=True, text=True).stdout.strip()
        self.write_conf(out)
        return int(out, 16)

    def snapshot(self, sub=""):
        top = os.path.join(self.root, sub)
        seen = {}
        for d, dirs, files in os.walk(top):
            for n in dirs + files:
                p = os.path.join(d, n)
                st = os.lstat(p)
                digest = None
                if os.path.isfile(p):
                    with open(p, "rb") as f:
                        digest = hashlib.sha256(f.read()).hexdigest()
                seen[os.path.relpath(p, self.root)] = (st.st_mode, st.st_uid, st.st_gid,
                                                       st.st_mtime_ns, digest)
        return seen


def register(bed, ks, *extra, expect=None, timeout=120):
    env = dict(os.environ)
    env["SRUP_REGISTER_OBSERVERD"] = os.path.join(BUILD, "observer", "srup-observerd")
    env["SRUP_REGISTER_DEVICE"] = os.path.join(BUILD, "device-side", "srup-device")
    argv = [os.path.join(BUILD, "registration", "srup-register"), "--config", bed.conf,
            "--url", ks.url, "--ca-file", ks.tls_ca_file] + list(extra)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                       stdin=subprocess.DEVNULL)
    print("$ %s\n-> %d\n%s%s" % (" ".join(argv), r.returncode, r.stdout, r.stderr))
    if expect is not None and r.returncode != expect:
        fail("exit status %d, expected %d" % (r.returncode, expect))
    return r


def id_text(ident):
    return "%02x" % ident


def dropin_values(bed):
    vals, section = {}, None
    with open(bed.dropin) as f:
        for line in f:
            line = line.strip()
            if line.startswith("["):
                section = line[1:-1]
            elif "=" in line and not line.startswith("#"):
                k, v = (x.strip() for x in line.split("=", 1))
                vals[section + "." + k] = v
    return vals


def mode(path):
    return os.stat(path).st_mode & 0o7777


def check_registered(bed, ks, r, default_port=False):
    m = re.search(r"^registered ([0-9a-f]+)$", r.stdout, re.M)
    if not m:
        fail("no 'registered <ID>' line")
    ident = m.group(1)
    for want in ("status: server %s active" % ks.server_id_text, "validated",
                 "certificate CN=%s until " % ident, "wrote %s" % bed.dropin):
        if want not in r.stdout:
            fail("output lacks %r" % want)
    vals = dropin_values(bed)
    server16 = "%016x" % int(ks.server_id_text, 16)
    if vals["server.id"] != server16:
        fail("server.id %s" % vals["server.id"])
    if int(vals["identity.id"], 16) != int(ident, 16):
        fail("identity.id %s vs %s" % (vals["identity.id"], ident))
    if vals["server.public_key"] != os.path.join(bed.keys, server16 + ".pem"):
        fail("server.public_key %s" % vals["server.public_key"])
    with open(vals["server.public_key"], "rb") as f:
        if f.read() != ks.server_public_pem:
            fail("the peer-store file does not hold the server's key")
    if default_port and vals["mqtt.broker"] != "mqtts://broker.test:8883":
        fail("broker %s, not mqtts://broker.test:8883" % vals["mqtt.broker"])
    cert = x509.load_pem_x509_certificate(open(vals["mqtt.cert_file"], "rb").read())
    cn = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    if cn != ident:
        fail("certificate CN %s" % cn)
    key = serialization.load_pem_private_key(open(vals["mqtt.key_file"], "rb").read(), None)
    if key.public_key().public_numbers() != cert.public_key().public_numbers():
        fail("access key and certificate differ")
    if open(vals["mqtt.ca_file"], "rb").read() != ks.ca_cert.public_bytes(
            serialization.Encoding.PEM):
        fail("ca_file is not the service's CA")
    for path in (vals["identity.private_key"], vals["mqtt.key_file"]):
        if mode(path) != 0o600:
            fail("%s has mode %o" % (path, mode(path)))
    # The service holds our key under the identity text.
    dev = ks.devices[ident]
    der = base64.b64decode(dev["key"])
    if serialization.load_der_public_key(der).public_numbers() != \
            serialization.load_pem_private_key(
                open(vals["identity.private_key"], "rb").read(), None).public_key().public_numbers():
        fail("the service holds another key")
    if "checked %s" % bed.conf not in r.stdout:
        fail("the configuration check did not pass")
    return int(ident, 16)


# ---- cases ------------------------------------------------------------------

def case_observer_first_run():
    bed = Bed("observer")
    with KeyService() as ks:
        r = register(bed, ks, expect=0)
        ident = check_registered(bed, ks, r, default_port=True)
        if ks.devices[id_text(ident)]["type"] != "observer":
            fail("type %r" % ks.devices[id_text(ident)]["type"])
        # The operator's file is untouched.
        if "id = 0" not in open(bed.conf).read():
            fail("the main file was changed")
        before = bed.snapshot()
        n = len(ks.requests)
        r = register(bed, ks, expect=0)
        if "unchanged %s" % bed.dropin not in r.stdout:
            fail("the re-run did not find itself in place")
        if bed.snapshot() != before:
            fail("the re-run changed files")
        if ("POST", "access") in ks.requests[n:]:
            fail("the re-run asked for another certificate")


def case_device_first_run():
    bed = Bed("device")
    with KeyService(faults={"default_c2": "same"}) as ks:
        r = register(bed, ks, "--type", "acme sensor", expect=0)
        ident = check_registered(bed, ks, r)
        if ks.devices[id_text(ident)]["type"] != "acme sensor":
            fail("--type not sent")


def case_identity_text_short():
    """An ID below 2^56 goes out without leading zeros ("%02x")."""
    bed = Bed("device")
    keys = bed.keys
    os.mkdir(keys, 0o700)
    subprocess.run([os.path.join(BUILD, "keys", "srup-keygen"), "--out", keys, "--id",
                    "00197405d43e4e2d"], check=True, capture_output=True)
    bed.write_conf("00197405d43e4e2d")
    with KeyService() as ks:
        r = register(bed, ks, expect=0)
        if "197405d43e4e2d" not in ks.devices:
            fail("the service holds %s" % list(ks.devices))
        if "certificate CN=197405d43e4e2d until" not in r.stdout:
            fail("CN")


def nothing_written(bed, ks, expect, *extra, prepare=True, sub="", faults_text=None):
    """Runs srup-register expecting exit status expect and no change under
    the bed's root; with sub="etc" (a failure after register succeeded)
    the state directory may hold the register answer kept for the re-run,
    and nothing else."""
    ident = bed.keygen() if prepare else None
    before = bed.snapshot(sub)
    r = register(bed, ks, *extra, expect=expect)
    if sub == "etc" and os.path.isdir(bed.state):
        extra_files = set(os.listdir(bed.state)) - {"registration-%016x.json" % ident}
        if extra_files:
            fail("the state directory holds %s" % sorted(extra_files))
    if bed.snapshot(sub) != before:
        fail("files changed: %s" % sorted(set(bed.snapshot(sub).items()) ^ set(before.items())))
    if os.path.exists(bed.dropin):
        fail("a drop-in was written")
    if faults_text and not re.search(faults_text, r.stderr):
        fail("stderr does not say %r" % faults_text)
    return r


def case_default_c2_other():
    bed = Bed()
    with KeyService(faults={"default_c2": "other"}) as ks:
        # A fresh identity: refused before it is written.
        nothing_written(bed, ks, 1, prepare=False, faults_text="default_c2 is abad1dea")


def case_inactive():
    bed = Bed()
    with KeyService(faults={"inactive": True}) as ks:
        nothing_written(bed, ks, 1, prepare=False, faults_text="not active")
        if any(route == "register" for _, route in ks.requests):
            fail("registered with an inactive server")


def case_server_id_mismatch():
    bed = Bed()
    with KeyService() as ks:
        nothing_written(bed, ks, 1, "--server-id", "1234", prepare=False,
                        faults_text="not 0000000000001234")


def case_pin_mismatch():
    bed = Bed()
    with KeyService() as ks:
        nothing_written(bed, ks, 1, "--pin-sha256", "ab" * 32, prepare=False,
                        faults_text="not the --pin-sha256")


def case_pin_match():
    bed = Bed()
    with KeyService() as ks:
        der = ks.server_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        r = register(bed, ks, "--pin-sha256", hashlib.sha256(der).hexdigest().upper(),
                     "--server-id", ks.server_id_text, expect=0)
        check_registered(bed, ks, r)


def case_id_held():
    bed = Bed()
    ident = bed.keygen()
    other = rsa.generate_private_key(65537, 2048).public_key()
    with KeyService(faults={"held": {id_text(ident): other}}) as ks:
        r = nothing_written(bed, ks, 1, prepare=False, faults_text="holds ID %s with another key"
                            % id_text(ident))
        der = other.public_bytes(serialization.Encoding.DER,
                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        if hashlib.sha256(der).hexdigest() not in r.stderr:
            fail("the held key's fingerprint is not named")


def case_validate_other_key():
    bed = Bed()
    with KeyService(faults={"validate_other_key": True}) as ks:
        nothing_written(bed, ks, 1, sub="etc", faults_text="does not verify")


def case_ca_key_unloadable():
    bed = Bed()
    with KeyService(faults={"ca_key_unloadable": True}) as ks:
        nothing_written(bed, ks, 1, sub="etc", faults_text="likely fault is the service's")


def case_cert_other_cn():
    bed = Bed()
    with KeyService(faults={"cert_cn": "feedface"}) as ks:
        nothing_written(bed, ks, 1, sub="etc", faults_text="CN=feedface")


def case_cert_expired():
    bed = Bed()
    with KeyService(faults={"cert_expired": True}) as ks:
        nothing_written(bed, ks, 1, sub="etc", faults_text="expired")


def case_http_500():
    for route, sub in (("status", ""), ("register", ""), ("validate", "etc"),
                       ("access", "etc")):
        bed = Bed()
        with KeyService(faults={"error500": route}) as ks:
            nothing_written(bed, ks, 5, sub=sub, faults_text="%s: the service answered HTTP 500"
                            % route)


def case_hang():
    bed = Bed()
    with KeyService(faults={"hang": True}) as ks:
        nothing_written(bed, ks, 4, "--timeout", "2", faults_text="no answer to status within 2 s")


def case_unreachable():
    bed = Bed()
    with KeyService() as ks:
        ks.stop()
        nothing_written(bed, ks, 5, faults_text="status: .*Couldn't connect")


def case_tls_not_verified():
    bed = Bed()
    with KeyService() as ks:
        # The access CA is not the one the service's TLS certificate chains to.
        bed.keygen()
        before = bed.snapshot()
        env_ca = ks.tls_ca_file
        ks.tls_ca_file = ks.ca_file
        r = register(bed, ks, expect=5)
        ks.tls_ca_file = env_ca
        if bed.snapshot() != before or "certificate" not in r.stderr.lower():
            fail("TLS verification failure not reported or files changed")


def case_bad_answers():
    cases = [
        ({"register_key": "ec"}, "not RSA"),
        ({"register_key": "rsa1024"}, "1024 bits"),
        ({"register_key": "nobase64"}, "not base64"),
        ({"register_key": "notakey"}, "not a SubjectPublicKeyInfo"),
        ({"status_body": b'{"active": true, "identity": "5e1'}, "not JSON"),
        ({"status_body": b'["active"]'}, "not an object"),
        ({"status_body": b'{"active": "yes", "identity": "12"}'}, "\"active\" is not"),
        ({"status_body": b'{"active": true, "identity": "0012"}'}, "not an ID"),
        ({"status_body": b'{"active": true, "identity": "' + b"a" * 70000 + b'"}'},
         "longer than 65536 bytes"),
    ]
    for faults, text in cases:
        bed = Bed()
        with KeyService(faults=faults) as ks:
            nothing_written(bed, ks, 5, faults_text=re.escape(text))


def case_dry_run():
    bed = Bed()
    with KeyService() as ks:
        before = bed.snapshot()
        r = register(bed, ks, "--dry-run", expect=0)
        if bed.snapshot() != before:
            fail("--dry-run wrote files")
        if [route for _, route in ks.requests] != ["status"]:
            fail("--dry-run asked the service %s" % ks.requests)
        if "dry run: would register" not in r.stdout:
            fail("no dry-run line")


def case_rerun_after_failure():
    """A fresh identity the service may hold is kept; the re-run asks for
    the same ID and finishes, with the broker and key the first register
    gave."""
    bed = Bed()
    with KeyService(faults={"error500": "register"}) as ks:
        register(bed, ks, expect=5)
        names = [n for n in os.listdir(bed.keys) if re.fullmatch(r"[0-9a-f]{16}\.pem", n)]
        if len(names) != 1 or not os.path.exists(os.path.join(bed.keys, "private.pem")):
            fail("the identity was not kept: %s" % names)
        ident = int(names[0][:16], 16)
        ks.faults.pop("error500")
        ks.faults["validate_other_key"] = True
        register(bed, ks, expect=1)
        if id_text(ident) not in ks.devices:
            fail("the second run registered another ID")
        ks.faults.pop("validate_other_key")
        r = register(bed, ks, expect=0)
        if "held already" not in r.stdout:
            fail("the third run did not find its ID held")
        if check_registered_held(bed, ks, r) != ident:
            fail("another ID")


def check_registered_held(bed, ks, r):
    vals = dropin_values(bed)
    if "validated" not in r.stdout or "wrote %s" % bed.dropin not in r.stdout:
        fail("not finished")
    with open(vals["server.public_key"], "rb") as f:
        if f.read() != ks.server_public_pem:
            fail("server key")
    return int(vals["identity.id"], 16)


def case_owner_as_root():
    if os.geteuid() != 0:
        print("SKIP: not root")
        sys.exit(77)
    bed = Bed()
    user = "nobody"
    pw = pwd.getpwnam(user)
    with KeyService() as ks:
        r = register(bed, ks, "--owner", user, expect=0)
        check_registered(bed, ks, r)
        if "checked as root" in r.stderr:
            fail("the configuration check ran as root, not as %s" % user)
        vals = dropin_values(bed)
        secret = [vals["identity.private_key"], vals["mqtt.key_file"]]
        public = [vals["mqtt.cert_file"], vals["mqtt.ca_file"], vals["server.public_key"]]
        for p in secret + public + [bed.keys]:
            st = os.stat(p)
            if st.st_uid != pw.pw_uid:
                fail("%s is owned by %d, not %s" % (p, st.st_uid, user))
        if mode(bed.keys) != 0o700:
            fail("keys dir mode %o" % mode(bed.keys))
        for p in secret:
            if mode(p) & 0o077:
                fail("%s is %o" % (p, mode(p)))
        # The service user reads everything; another user reads no secret.
        for p in secret + public + [bed.dropin]:
            subprocess.run(["cat", p], user=user, check=True, capture_output=True)
        other = "daemon"
        for p in secret:
            if subprocess.run(["cat", p], user=other, capture_output=True).returncode == 0:
                fail("%s can read %s" % (other, p))


def case_usage():
    bed = Bed()
    with KeyService() as ks:
        exe = os.path.join(BUILD, "registration", "srup-register")
        for argv, code in (([], 2), (["--config", bed.conf], 2),
                           (["--config", bed.conf, "--url", "http://127.0.0.1:1"], 2),
                           (["--config", bed.conf, "--url", ks.url, "--pin-sha256", "12"], 2),
                           (["--config", bed.conf, "--url", ks.url, "--owner", "no-such-user-x"],
                            2),
                           (["--config", bed.root + "/missing.conf", "--url", ks.url], 3),
                           (["--config", bed.conf, "--url", ks.url, "--ca-file",
                             bed.root + "/no-ca.pem"], 3),
                           (["--config", bed.root + "/missing.conf", "--url", ks.url + "//"], 3)):
            rc = subprocess.run([exe] + argv, capture_output=True).returncode
            if rc != code:
                fail("%s: exit %d, expected %d" % (argv, rc, code))


def case_observed_join_mqtts():
    """Observer and device registered from nothing; the observed join over
    mqtts with the issued certificates; the peer (the C2 server) takes both
    keys from the service."""
    from joinbed import Proc, id16

    procs = []
    from regbed import TlsBroker

    with KeyService() as ks:
        tls = broker = TlsBroker(ks)
        broker.start()
        try:
            ks.broker = "mqtt://127.0.0.1:%d" % broker.port
            obs = Bed("observer")
            dev = Bed("device", sim_socket=obs.sim_socket)
            r = register(obs, ks, expect=0)
            obs_id = check_registered(obs, ks, r)
            r = register(dev, ks, expect=0)
            dev_id = check_registered(dev, ks, r)
            if dropin_values(obs)["mqtt.broker"] != "mqtts://127.0.0.1:%d" % broker.port:
                fail("broker %s" % dropin_values(obs)["mqtt.broker"])

            # The C2 server: the service's server key, a client certificate
            # of the same CA, an empty peer store and the service for keys.
            srv = tempfile.mkdtemp(prefix="srup-reg-server.")
            ROOTS.append(srv)
            os.mkdir(os.path.join(srv, "peers"))
            server_key = ks.write_server_private(os.path.join(srv, "server.pem"))
            cert, key = ks.issue_client_cert(srv, ks.server_id_text)
            server_id = int(ks.server_id_text, 16)

            def spawn(name, argv):
                p = Proc(name, argv, log=lambda t: print(t, flush=True))
                procs.append(p)
                return p

            peer = spawn("peer", [
                os.path.join(BUILD, "tests", "peer", "srup-join-peer"),
                "--broker", "mqtts://127.0.0.1:%d" % broker.port,
                "--ca-file", ks.ca_file, "--cert-file", cert, "--key-file", key,
                "--id", id16(server_id), "--key", server_key,
                "--peers", os.path.join(srv, "peers"), "--state", os.path.join(srv, "state"),
                "--watch", id16(obs_id), "--timeout", "120",
                "--keyex", ks.url, "--keyex-ca", ks.tls_ca_file])
            peer.wait_line(r"^READY", 30)
            observer = spawn("observer", [os.path.join(BUILD, "observer", "srup-observerd"),
                                          "--config", obs.conf])
            observer.wait_line(r"connected to the broker", 30)
            device = spawn("device", [os.path.join(BUILD, "device-side", "srup-device"),
                                      "--config", dev.conf, "join", "--observer",
                                      "%x" % obs_id, "--channel", "sim", "--timeout", "120"])
            rc = device.wait(180)
            if rc != 0 or "JOIN_SUCCESS" not in device.text():
                fail("the device did not join (rc %d)" % rc)
            _, m = peer.wait_line(r"^OUTCOME (.*)$", 20)
            fields = dict(kv.split("=", 1) for kv in m.group(1).split())
            if fields.get("observer_status") != "0x60" or fields.get("status") != "0x50":
                fail("the peer saw %r" % fields)
            # Both keys came from the service, not from files.
            for ident in (dev_id, obs_id):
                peer.wait_line(r"^KEYEX device=%s found$" % id16(ident), 5)
            if os.listdir(os.path.join(srv, "peers")):
                fail("the peer store was not empty")
            # The broker knew each client by its certificate's CN.
            log = tls.log_text()
            for ident in (obs_id, dev_id, server_id):
                if not re.search(r"New client connected .* u'%s'\)" % id_text(ident), log):
                    fail("the broker never saw a client as %s:\n%s" % (id_text(ident), log))
        finally:
            for p in reversed(procs):
                p.stop()
            tls.close()


def main():
    global BUILD
    BUILD = os.path.abspath(sys.argv[1])
    case = sys.argv[2]
    try:
        globals()["case_" + case]()
    finally:
        for root in ROOTS:
            shutil.rmtree(root, ignore_errors=True)
    print("ok: %s" % case)


if __name__ == "__main__":
    main()
