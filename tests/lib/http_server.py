"""A local HTTP(S) server for the update tests, on a free loopback port.

HttpServer serves, in a thread of the test process:
  /good            the update file (GOOD, its SHA-256 in good_digest)
  /other           a different file (what a wrong digest looks like)
  /missing         404 with a short text body
  /error           500 with a short text body
  /slow?s=N        the good file, dribbled out over N seconds; with &hold=1
                   its last part only once release() was called (at most 120 s)
  /big?bytes=N     N bytes (for the size limit)
  /redirect?n=K    K redirects, then /good
With tls=True it speaks HTTPS with a certificate for 127.0.0.1 from a CA
made for this run (openssl), whose certificate is ca_file. Every request's
path is recorded in requests (a replayed INITIATE must add none).

Run as a script it checks itself (both schemes, every path).
"""
import hashlib
import http.server
import os
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse

GOOD = b"SRUP update image v2\n" + bytes(range(256)) * 64
OTHER = b"not the update you are looking for\n" * 100
MISSING_BODY = b"no such update here\n"
ERROR_BODY = b"internal error: the update store is offline\n"


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def make_ca(directory):
    """A CA and a server certificate for 127.0.0.1 signed by it; returns
    (ca_cert, server_cert, server_key) paths."""
    def run(*argv):
        subprocess.run(argv, check=True, cwd=directory, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=SRUP test CA", "-keyout", "ca.key", "-out", "ca.pem",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")
    with open(os.path.join(directory, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem")
    return tuple(os.path.join(directory, n) for n in ("ca.pem", "server.pem", "server.key"))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the tests print what matters
        pass

    def _send(self, code, body, ctype="application/octet-stream"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        with self.server.owner.lock:
            self.server.owner.requests.append(self.path)
        if url.path == "/good":
            self._send(200, GOOD)
        elif url.path == "/other":
            self._send(200, OTHER)
        elif url.path == "/missing":
            self._send(404, MISSING_BODY, "text/plain")
        elif url.path == "/error":
            self._send(500, ERROR_BODY, "text/plain")
        elif url.path == "/big":
            n = int(query.get("bytes", "1048576"))
            self._send(200, b"B" * n)
        elif url.path == "/redirect":
            n = int(query.get("n", "1"))
            self.send_response(302)
            self.send_header("Location", "/redirect?n=%d" % (n - 1) if n > 1 else "/good")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif url.path == "/slow":
            seconds = float(query.get("s", "5"))
            hold = query.get("hold") == "1"
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(GOOD)))
            self.end_headers()
            steps = 10
            chunk = (len(GOOD) + steps - 1) // steps
            for i in range(steps):
                time.sleep(seconds / steps)
                if hold and i == steps - 1:
                    self.server.owner.released.wait(120)
                try:
                    self.wfile.write(GOOD[i * chunk:(i + 1) * chunk])
                    self.wfile.flush()
                except OSError:
                    return
        else:
            self._send(404, b"unknown test path\n", "text/plain")


class HttpServer:
    def __init__(self, workdir=None, tls=False):
        self.tls = tls
        self.dir = workdir or tempfile.mkdtemp(prefix="srup-http-")
        os.makedirs(self.dir, exist_ok=True)
        self.requests = []
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.ca_file = None
        self.httpd = None
        self.thread = None

    def start(self):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        if self.tls:
            ca, cert, key = make_ca(self.dir)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            self.ca_file = ca
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def url(self, path):
        return "%s://127.0.0.1:%d%s" % ("https" if self.tls else "http", self.port, path)

    def release(self):
        """Let held /slow answers finish."""
        self.released.set()

    def count(self, prefix):
        with self.lock:
            return sum(1 for p in self.requests if p.startswith(prefix))

    def close(self):
        self.released.set()
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


good_digest = sha256_hex(GOOD)


def _self_check():
    import urllib.error
    import urllib.request
    for tls in (False, True):
        with HttpServer(tls=tls) as srv:
            ctx = ssl.create_default_context(cafile=srv.ca_file) if tls else None
            get = lambda p: urllib.request.urlopen(srv.url(p), timeout=20, context=ctx)  # noqa: E731
            assert get("/good").read() == GOOD
            assert get("/other").read() == OTHER
            assert get("/redirect?n=2").read() == GOOD
            assert len(get("/big?bytes=1000").read()) == 1000
            t0 = time.monotonic()
            assert get("/slow?s=0.5").read() == GOOD
            assert time.monotonic() - t0 >= 0.4
            threading.Timer(0.3, srv.release).start()
            assert get("/slow?s=0.1&hold=1").read() == GOOD and srv.released.is_set()
            for path, code, body in (("/missing", 404, MISSING_BODY), ("/error", 500, ERROR_BODY)):
                try:
                    get(path)
                    raise AssertionError("%s answered 200" % path)
                except urllib.error.HTTPError as e:
                    assert e.code == code and e.read() == body, (path, e.code)
            assert srv.count("/good") == 2 and srv.count("/redirect") == 2
    print("http_server: ok")


if __name__ == "__main__":
    _self_check()
