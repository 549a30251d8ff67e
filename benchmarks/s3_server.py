"""A real S3 server for tests and benchmarks: moto's, on 127.0.0.1, and an HTTP proxy in front of it
that adds latency, caps bandwidth and injects faults (503s, reset connections, denied access).

Used by ``tests/mixtures/storage`` and ``tests/e2e/test_remote_shards.py`` (loaded by path) and by
``benchmarks/remote_stream.py``. The faults are deterministic: every ``n``-th request of a kind.
"""

from __future__ import annotations

import http.client
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# moto accepts any credentials; these names are what the AWS SDKs read (no real account is reached)
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "flanforge-test-key", "AWS_SECRET_ACCESS_KEY": "flanforge-test-secret-9f3b",
               "AWS_DEFAULT_REGION": "us-east-1"}
_SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
              b"<Message>Please reduce your request rate.</Message></Error>")
_DENIED = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
           b"<Message>Access Denied</Message></Error>")


def use_test_credentials() -> None:
    """:data:`CREDENTIALS` in this process's environment, where it has none of its own."""
    os.environ.update({k: os.environ.get(k, v) for k, v in CREDENTIALS.items()})


def start_moto():
    """``(server, endpoint_url)``: moto's S3 server in a thread on a free port of 127.0.0.1."""
    from moto.server import ThreadedMotoServer

    use_test_credentials()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def make_bucket(endpoint: str, name: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)


@dataclass
class Faults:
    """What the proxy does to requests: ``latency`` seconds before each, ``bandwidth`` bytes/s per
    response (0: no cap); every ``slow_down_every``-th GET answered 503 SlowDown, every
    ``reset_every``-th GET of an object cut off mid-body by a TCP reset; ``deny``: every request 403."""

    latency: float = 0.0
    bandwidth: float = 0.0
    slow_down_every: int = 0
    reset_every: int = 0
    deny: bool = False


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 forwarding to ``target`` (moto's endpoint) under :class:`Faults`."""

    def __init__(self, target: str, faults: Faults | None = None):
        self.target = target.split("://", 1)[1]
        self.faults = faults or Faults()
        self.requests = 0
        self.log: list[str] = []
        """``"METHOD /path"`` of every request, in arrival order."""
        self.faulted = 0
        self.object_bytes = 0
        """Bytes of object bodies sent in full (downloads; listings and faults not counted)."""
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _count(self, line: str) -> int:
        with self._lock:
            self.log.append(line)
            self.requests += 1
            return self.requests

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _forward(self):
                try:
                    self._relay()
                except (BrokenPipeError, ConnectionResetError):  # the client went away (a killed rank)
                    self.close_connection = True

            def _relay(self):
                faults = proxy.faults
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                n = proxy._count(f"{self.command} {self.path.split('?')[0]}")
                if faults.latency:
                    time.sleep(faults.latency)
                if faults.deny:
                    return self._answer(403, _DENIED)
                getting_object = self.command == "GET" and "?" not in self.path
                if self.command == "GET" and faults.slow_down_every and n % faults.slow_down_every == 0:
                    with proxy._lock:
                        proxy.faulted += 1
                    return self._answer(503, _SLOW_DOWN)
                conn = http.client.HTTPConnection(proxy.target, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                response = conn.getresponse()
                data = response.read()
                conn.close()
                cut = getting_object and faults.reset_every and n % faults.reset_every == 0 and len(data) > 1
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "content-length", "connection", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command == "HEAD":
                    return None
                if cut:
                    with proxy._lock:
                        proxy.faulted += 1
                    self._send(data[: len(data) // 2])
                    self.wfile.flush()
                    # SO_LINGER 0: close with a reset, as a dropped connection does
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return None
                self._send(data)
                if getting_object:
                    with proxy._lock:
                        proxy.object_bytes += len(data)
                return None

            def _send(self, data: bytes):
                rate = proxy.faults.bandwidth
                step = max(1, int(rate * 0.01)) if rate else len(data) or 1
                for i in range(0, len(data), step):
                    self.wfile.write(data[i: i + step])
                    if rate:
                        time.sleep(len(data[i: i + step]) / rate)

            def _answer(self, status: int, body: bytes):
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        return Handler
