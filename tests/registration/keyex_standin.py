"""A stand-in for the reference key service ("KeyEx", REGISTRATION.md), for
the registration tests: HTTPS on a free loopback port, in a thread of the
test process, with a TLS CA and an access CA made for each run.

Routes, under /KeyEx/register/:
  GET  status          200 {"active": true, "identity": <server ID text>}
  POST register        201 {"broker": B, "key": SK}; 400 "Device ID .. already exists"
  POST validate        200 {"identity": <server ID text>, "signature": SS}
  POST access          200 {"certificate": .., "CA_certificate": ..}
  GET  get_key/<ID>    200 base64 of the PEM; 404
  GET  get_type/<ID>   200 the type text; 404
Every answer says Content-Type: text/html, as the reference's do; base64
goes out in 76-column lines ending in "\\n".

Switches (KeyService(faults={...})) for what real services do wrong:
  default_c2="same"|"other"  register's answer carries default_c2
  inactive                   status says "active": false
  ca_key_unloadable          every access is 400 (the CA key cannot be loaded)
  held={ID text: public key} IDs already registered, with their keys
  validate_other_key         validate's signature is made with another key
  cert_cn="..."              the certificate names another CN
  cert_expired               the certificate's dates lie in the past
  error500="status"|"register"|"validate"|"access"
  register_key=K             register's "key" is K (bad input: "ec", "rsa1024",
                             "nobase64", "notakey")
  status_body=b"..."         status answers exactly these bytes (truncated
                             JSON, an over-long body, ...)
  hang                       the listener accepts and never answers

Requires only what Debian 12 ships (python3-cryptography 38).
"""
import base64
import datetime
import http.server
import json
import os
import shutil
import socket
import ssl
import tempfile
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

PREFIX = "/KeyEx/register/"


def _b64_lines(data):
    return base64.encodebytes(data).decode()


def _pss_max():
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _now():
    return datetime.datetime.utcnow().replace(microsecond=0)


def make_ca(cn):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def issue_server_cert(ca_key, ca_cert, directory, stem, host="127.0.0.1"):
    """A TLS server certificate for an IP address, signed by the CA; returns
    (cert path, key path)."""
    import ipaddress
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(_name(host)).issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path = os.path.join(directory, stem + ".pem")
    key_path = os.path.join(directory, stem + ".key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    return cert_path, key_path


def bare_key(public_key):
    """The service's key form: base64 of SubjectPublicKeyInfo DER, one line."""
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


class KeyService:
    def __init__(self, server_id=0x5e17ed0c2, broker="mqtt://broker.test", faults=None):
        self.faults = dict(faults or {})
        self.server_id_text = "%02x" % server_id
        self.server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.broker = broker
        self.dir = tempfile.mkdtemp(prefix="srup-keyex.")
        self.tls_ca_key, self.tls_ca_cert = make_ca("KeyEx test TLS CA")
        self.ca_key, self.ca_cert = make_ca("KeyEx test access CA")
        self.tls_ca_file = os.path.join(self.dir, "tls-ca.pem")
        with open(self.tls_ca_file, "wb") as f:
            f.write(self.tls_ca_cert.public_bytes(serialization.Encoding.PEM))
        self.ca_file = os.path.join(self.dir, "access-ca.pem")
        with open(self.ca_file, "wb") as f:
            f.write(self.ca_cert.public_bytes(serialization.Encoding.PEM))
        self._tls_cert, self._tls_key = issue_server_cert(self.tls_ca_key, self.tls_ca_cert,
                                                          self.dir, "https")
        # ID text -> {"key": bare base64, "type": text}
        self.devices = {}
        for ident, pub in self.faults.get("held", {}).items():
            self.devices[ident] = {"key": bare_key(pub), "type": "held"}
        self.requests = []  # (method, route)
        self.issued = []    # certificates issued (x509.Certificate)
        self._httpd = None
        self._hang_sock = None
        self._hang_conns = []
        self.port = None

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.port

    @property
    def server_public_pem(self):
        return self.server_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def write_server_private(self, path):
        """The server's private key as PEM (mode 0600), for a C2 server
        (the test peer) that speaks as the service's server."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.server_key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
        return path

    def issue_client_cert(self, directory, cn):
        """A broker client certificate for CN=cn from the access CA, as
        access issues one; returns (cert, key) paths."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = _now()
        cert = (x509.CertificateBuilder()
                .subject_name(_name(cn)).issuer_name(self.ca_cert.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=2))
                .sign(self.ca_key, hashes.SHA256()))
        cert_path = os.path.join(directory, "client-%s.pem" % cn)
        key_path = os.path.join(directory, "client-%s.key" % cn)
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))
        return cert_path, key_path

    def issue_broker_cert(self, directory):
        """A broker certificate for 127.0.0.1 from the access CA (the CA
        the service hands out at access); returns (cert, key) paths."""
        return issue_server_cert(self.ca_key, self.ca_cert, directory, "broker")

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def start(self):
        if self.faults.get("hang"):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            s.listen(16)
            self._hang_sock = s
            self.port = s.getsockname()[1]
            threading.Thread(target=self._hang_accept, daemon=True).start()
            return
        service = self

        class Handler(_Handler):
            keyex = service

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # The reference deployment caps TLS at 1.2.
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self._tls_cert, self._tls_key)
        self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def _hang_accept(self):
        while True:
            try:
                conn, _ = self._hang_sock.accept()
            except OSError:
                return
            self._hang_conns.append(conn)  # held open, never read or answered

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def stop(self):
        """Stop listening (the port then refuses); the files stay."""
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._hang_sock:
            self._hang_sock.close()
            for c in self._hang_conns:
                c.close()
            self._hang_sock = None

    # -- the routes ---------------------------------------------------------

    def route(self, method, path, body):
        """Returns (status, body bytes)."""
        if not path.startswith(PREFIX):
            return 404, b"Not Found\n"
        route = path[len(PREFIX):]
        self.requests.append((method, route))
        name = route.split("/", 1)[0]
        if self.faults.get("error500") == name:
            return 500, b"Internal Server Error\n"
        if method == "GET" and route == "status":
            if "status_body" in self.faults:
                return 200, self.faults["status_body"]
            return 200, json.dumps({"active": not self.faults.get("inactive"),
                                    "identity": self.server_id_text}).encode()
        if method == "GET" and name in ("get_key", "get_type") and "/" in route:
            ident = route.split("/", 1)[1]
            dev = self.devices.get(ident)
            if dev is None:
                return 404, b"Not Found\n"
            if name == "get_type":
                return 200, dev["type"].encode()
            pem = ("-----BEGIN PUBLIC KEY-----\n" + "\n".join(
                dev["key"][i:i + 64] for i in range(0, len(dev["key"]), 64))
                + "\n-----END PUBLIC KEY-----\n").encode()
            return 200, _b64_lines(pem).encode()
        if method != "POST" or name not in ("register", "validate", "access"):
            return 404, b"Not Found\n"
        try:
            req = json.loads(body)
            if not isinstance(req, dict):
                raise ValueError
        except ValueError:
            return 400, b"Missing or malformed JSON\n"
        return getattr(self, "_" + name)(req)

    def _register(self, req):
        try:
            ident, key, typ = req["identity"], req["key"], req["type"]
        except KeyError:
            return 400, b"Missing or malformed JSON\n"
        if ident in self.devices:
            return 400, ("Device ID %s already exists; use a different ID\n" % ident).encode()
        self.devices[ident] = {"key": key, "type": typ}  # unchecked, as the reference
        answer = {"broker": self.broker, "key": self._register_key()}
        c2 = self.faults.get("default_c2")
        if c2 == "same":
            answer["default_c2"] = self.server_id_text
        elif c2 == "other":
            answer["default_c2"] = "abad1dea"
        return 201, json.dumps(answer).encode()

    def _register_key(self):
        kind = self.faults.get("register_key")
        if kind is None:
            return _b64_lines(self.server_key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
        if kind == "ec":
            return bare_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        if kind == "rsa1024":
            return bare_key(rsa.generate_private_key(65537, 1024).public_key())
        if kind == "nobase64":
            return "MIIBIjANBgkqhkiG9w0B!!not base64!!"
        if kind == "notakey":
            return base64.b64encode(b"this is not DER at all").decode()
        raise ValueError(kind)

    def _device_key(self, ident):
        der = base64.b64decode(self.devices[ident]["key"])
        return serialization.load_der_public_key(der)

    def _validate(self, req):
        try:
            ident, sig = req["identity"], req["signature"]
        except KeyError:
            return 400, b"Missing or malformed JSON\n"
        if ident not in self.devices:
            return 500, b"Internal Server Error\n"
        try:
            self._device_key(ident).verify(base64.b64decode(sig), ident.encode(), _pss_max(),
                                           hashes.SHA256())
        except Exception:
            return 400, b"The signature did not verify\n"
        signer = self.other_key if self.faults.get("validate_other_key") else self.server_key
        ss = signer.sign(self.server_id_text.encode(), _pss_max(), hashes.SHA256())
        return 200, json.dumps({"identity": self.server_id_text,
                                "signature": _b64_lines(ss)}).encode()

    def _access(self, req):
        try:
            ident, csr_b64, sig = req["identity"], req["csr"], req["signature"]
        except KeyError:
            return 400, b"Missing or malformed JSON\n"
        if ident not in self.devices:
            return 500, b"Internal Server Error\n"
        csr_pem = base64.b64decode(csr_b64)
        try:
            self._device_key(ident).verify(base64.b64decode(sig), csr_pem, _pss_max(),
                                           hashes.SHA256())
        except Exception:
            return 400, b"The CSR data did not verify\n"
        if self.faults.get("ca_key_unloadable"):
            # What the reference answers when its CA key cannot be loaded.
            return 400, b"The CSR data did not verify\n"
        csr = x509.load_pem_x509_csr(csr_pem)
        if not isinstance(csr.signature_hash_algorithm, hashes.SHA256):
            return 500, b"Internal Server Error\n"
        # As the reference: the CSR's CN is taken as it is, not compared.
        cn = self.faults.get("cert_cn") or \
            csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        now = _now()
        if self.faults.get("cert_expired"):
            start, end = now - datetime.timedelta(days=400), now - datetime.timedelta(days=35)
        else:
            start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=365)
        cert = (x509.CertificateBuilder()
                .subject_name(_name(cn)).issuer_name(self.ca_cert.subject)
                .public_key(csr.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .sign(self.ca_key, hashes.SHA256()))
        self.issued.append(cert)
        return 200, json.dumps({
            "certificate": _b64_lines(cert.public_bytes(serialization.Encoding.PEM)),
            "CA_certificate": _b64_lines(self.ca_cert.public_bytes(serialization.Encoding.PEM)),
        }).encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    keyex = None
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _answer(self, method):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, out = self.keyex.route(method, self.path, body)
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self):
        self._answer("GET")

    def do_POST(self):
        self._answer("POST")


if __name__ == "__main__":
    # Self-check: every route once, over HTTPS verified with the run's CA.
    import urllib.request
    import urllib.error

    with KeyService() as ks:
        ctx = ssl.create_default_context(cafile=ks.tls_ca_file)

        def call(route, obj=None):
            data = json.dumps(obj).encode() if obj is not None else None
            req = urllib.request.Request(ks.url + PREFIX + route, data=data,
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, context=ctx) as r:
                    return r.status, r.read()
            except urllib.error.HTTPError as e:
                return e.code, e.read()

        dev = rsa.generate_private_key(65537, 2048)
        st, body = call("status")
        assert st == 200 and json.loads(body)["identity"] == ks.server_id_text, body
        st, body = call("register", {"identity": "1234", "key": bare_key(dev.public_key()),
                                     "type": "t"})
        assert st == 201, body
        st, _ = call("register", {"identity": "1234", "key": "x", "type": "t"})
        assert st == 400
        sig = dev.sign(b"1234", _pss_max(), hashes.SHA256())
        st, body = call("validate", {"identity": "1234",
                                     "signature": base64.b64encode(sig).decode()})
        assert st == 200, body
        ss = base64.b64decode(json.loads(body)["signature"])
        ks.server_key.public_key().verify(ss, ks.server_id_text.encode(), _pss_max(),
                                          hashes.SHA256())
        st, _ = call("get_key/1234")
        assert st == 200
        st, _ = call("get_key/99")
        assert st == 404
        print("keyex stand-in: ok")
