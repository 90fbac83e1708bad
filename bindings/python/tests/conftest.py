"""Fixtures of the Python suite: a platform on a fresh data directory and vendors on loopback.

Run from a build with -DINTEGRATION_BUILD_PYTHON=ON: PYTHONPATH=<build>/python (ctest sets it),
or after installing the package.
"""

import base64
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

import integration

ROOT = Path(__file__).resolve().parents[3]


class Vendor:
    """A vendor's API on 127.0.0.1: answers every request with `status` and a JSON echo of the
    request (method, path, headers, body), after `before_answer` returns. Records each request
    (with its body as text and as the raw bytes) and the most requests it had in flight at once."""

    def __init__(self, status: int = 200, before_answer: Optional[Callable[[], None]] = None) -> None:
        self.status = status
        self.before_answer = before_answer
        # Sent with every answer (as Latin-1, as http.server does); a list sends the field once per value.
        self.extra_headers: dict[str, "str | list[str]"] = {}
        self.requests: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                seen = {"method": self.command, "path": self.path, "headers": dict(self.headers),
                        "body": raw.decode(), "raw": raw}
                with vendor.lock:
                    vendor.requests.append(seen)
                    vendor.in_flight += 1
                    vendor.max_in_flight = max(vendor.max_in_flight, vendor.in_flight)
                try:
                    if vendor.before_answer and self.path != "/health":
                        vendor.before_answer()
                finally:
                    with vendor.lock:
                        vendor.in_flight -= 1
                echo = {k: v for k, v in seen.items() if k != "raw"}
                out = json.dumps({"id": "SM-0001", "echo": echo}).encode()
                status = 200 if self.path == "/health" else vendor.status
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                for name, value in vendor.extra_headers.items():
                    for one in value if isinstance(value, list) else [value]:
                        self.send_header(name, one)
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = handle_one

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def vendor() -> Iterator[Vendor]:
    v = Vendor()
    yield v
    v.close()


class Logs:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, level: str, message: str) -> None:
        with self.lock:
            self.lines.append(f"{level}: {message}")


@pytest.fixture
def logs() -> Logs:
    return Logs()


@pytest.fixture
def platform(tmp_path: Path, logs: Logs) -> Iterator[integration.Platform]:
    with integration.open(data_dir=str(tmp_path / "data"), egress_allow=["127.0.0.0/8"], log=logs) as p:
        yield p


def connect(tenant: integration.Tenant, url: str, secret: str = "s3cr3t-key", key: str = "acme",
            idempotency_header: Optional[str] = None) -> str:
    """Provider, API client, credential and an Active connection to `url`: the README walkthrough.
    `idempotency_header`: the header by which the vendor dedupes sms.send (a POST)."""
    provider = tenant.register_provider(key=key, display_name="Acme", base_url=url, capabilities=["sms.send"],
                                        health_check={"method": "GET", "path": "/health"})
    operation = {"operation": "sms.send", "method": "POST", "path": "/v1/accounts/{account}/messages"}
    if idempotency_header:
        operation["idempotency_header"] = idempotency_header
    client = tenant.register_client(provider["provider_id"], assembly_name="Acme.Sms" if key == "acme" else f"Acme.Sms.{key}",
                                    version="1.0.0", capabilities=["sms.send"], operations=[operation])
    tenant.activate_client(client["api_client_id"])
    tenant.activate_provider(provider["provider_id"])
    credential = tenant.create_credential(provider_id=provider["provider_id"], secret=secret,
                                          api_key={"name": "X-Api-Key"})
    connection = tenant.create_connection(provider_id=provider["provider_id"], project_id="p1",
                                          display_name="Acme", credential_id=credential["credential_id"])
    assert connection["status"] == "Active", connection
    return str(connection["connection_id"])


def standard_signature(secret: bytes, webhook_id: str, timestamp: str, body: bytes) -> str:
    """Standard Webhooks `v1`, computed here: base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`
    keyed with the base64-decoded part of the `whsec_` secret."""
    assert secret.startswith(b"whsec_")
    key = base64.b64decode(secret[len(b"whsec_"):])
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()
