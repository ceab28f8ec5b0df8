"""A small MQTT 3.1.1 client over a plain socket, for tests that must time
or burst what they publish (mosquitto_pub starts one process per message).

    c = MqttClient("127.0.0.1", port, "test-server")
    c.subscribe("SRUP/servers/1/#")
    mids = [c.publish(topic, payload) for payload in burst]
    c.wait_acked(mids, 10)
    t, topic, payload = c.next_message(5)

Messages are collected by a reader thread with the monotonic time they were
read (QoS 1 ones are acknowledged at once). Standard library only.
"""
import socket
import struct
import threading
import time
import queue


def _varlen(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


class MqttClient:
    def __init__(self, host, port, client_id, clean=True, timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._lock = threading.Lock()   # writes and packet ids
        self._acked = set()
        self._acked_cv = threading.Condition(threading.Lock())
        self._mid = 0
        self.messages = queue.Queue()
        flags = 0x02 if clean else 0x00
        body = _str("MQTT") + bytes([4, flags]) + struct.pack(">H", 60) + _str(client_id)
        self._send(0x10, body)
        head = self._read_exact(4)
        if head[0] != 0x20 or head[3] != 0:
            raise RuntimeError("CONNACK refused: %r" % head)
        self.sock.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    def _send(self, first, body):
        with self._lock:
            self.sock.sendall(bytes([first]) + _varlen(len(body)) + body)

    def _read_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("broker closed the connection")
            buf += chunk
        return buf

    def _read_packet(self):
        first = self._read_exact(1)[0]
        mult, length = 1, 0
        while True:
            b = self._read_exact(1)[0]
            length += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                break
        return first, self._read_exact(length) if length else b""

    def _read_loop(self):
        try:
            while True:
                first, body = self._read_packet()
                kind = first >> 4
                if kind == 3:  # PUBLISH
                    t = time.monotonic()
                    qos = (first >> 1) & 3
                    tlen = struct.unpack(">H", body[:2])[0]
                    topic = body[2:2 + tlen].decode(errors="replace")
                    at = 2 + tlen
                    if qos:
                        mid = body[at:at + 2]
                        at += 2
                        self._send(0x40, mid)
                    self.messages.put((t, topic, body[at:]))
                elif kind == 4:  # PUBACK
                    with self._acked_cv:
                        self._acked.add(struct.unpack(">H", body)[0])
                        self._acked_cv.notify_all()
        except (EOFError, OSError):
            self.messages.put(None)

    def _next_mid(self):
        with self._lock:
            self._mid = self._mid % 65535 + 1
            return self._mid

    def subscribe(self, topic, qos=1):
        self._send(0x82, struct.pack(">H", self._next_mid()) + _str(topic) + bytes([qos]))
        time.sleep(0.2)  # the SUBACK is not waited for by the reader

    def publish(self, topic, payload, qos=1):
        """Returns the packet id (QoS 1) to wait for."""
        if qos == 0:
            self._send(0x30, _str(topic) + payload)
            return None
        mid = self._next_mid()
        with self._lock:
            self._acked.discard(mid)
        self._send(0x32, _str(topic) + struct.pack(">H", mid) + payload)
        return mid

    def wait_acked(self, mids, timeout):
        deadline = time.monotonic() + timeout
        with self._acked_cv:
            while not set(mids) <= self._acked:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("%d publishes not acknowledged" % len(set(mids) - self._acked))
                self._acked_cv.wait(left)

    def next_message(self, timeout):
        """(monotonic time read, topic, payload), or raise TimeoutError."""
        try:
            item = self.messages.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("no message within %.1fs" % timeout)
        if item is None:
            raise EOFError("connection closed")
        return item

    def close(self):
        try:
            self._send(0xE0, b"")
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
