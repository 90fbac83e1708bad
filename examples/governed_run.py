#!/usr/bin/env python3
"""One governed run through the platform from Python, against a loopback stand-in for the vendor:
register a provider and its API client, store a credential, create (and probe) a connection,
execute, and read the run back. The Python twin of governed_run.cpp.

Usage: /usr/bin/python3 examples/governed_run.py [DATA_DIR]   (default ./data; each run uses a
tenant of its own)
"""

import sys
import threading
import uuid
from typing import Any
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import integration


class Vendor(BaseHTTPRequestHandler):
    """Answers every request 200 {"id":"SM-0001"}."""

    protocol_version = "HTTP/1.1"

    def answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"id":"SM-0001"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer

    def log_message(self, format: str, *args: object) -> None:
        pass


def connect(t: integration.Tenant, vendor_url: str) -> dict[str, Any]:
    """The vendor's provider and API client, an API-key credential and a connection: what a run needs.
    The connection is probed when created: Active once the vendor's health check passes."""
    provider = t.register_provider(key="acme", display_name="Acme", base_url=vendor_url, capabilities=["sms.send"])
    client = t.register_client(provider["provider_id"], assembly_name="Acme.Sms", version="1.0.0",
                               capabilities=["sms.send"],
                               operations=[{"operation": "sms.send", "method": "POST", "path": "/v1/messages"}])
    t.activate_client(client["api_client_id"])
    t.activate_provider(provider["provider_id"])
    key = t.create_credential(provider_id=provider["provider_id"], secret=b"s3cr3t")
    return t.create_connection(provider_id=provider["provider_id"], project_id="p1", display_name="Acme",
                               credential_id=key["credential_id"])


def main() -> int:
    data_dir = sys.argv[1] if len(sys.argv) > 1 else "./data"
    vendor = ThreadingHTTPServer(("127.0.0.1", 0), Vendor)
    threading.Thread(target=vendor.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{vendor.server_address[1]}"

    # The vendor is on loopback, so the egress policy allows 127/8 (private ranges are refused by default).
    with integration.open(data_dir=data_dir, egress_allow=["127.0.0.0/8"]) as p:
        t = p.tenant(f"tenant-{uuid.uuid4().hex[:12]}", "alice")  # fresh: rerun at will
        conn = connect(t, url)
        out = t.execute(connection_id=conn["connection_id"], operation="sms.send", body={"to": "+15550100"})
        run = t.get_run(out["run_id"])
        print(f"connection {conn['connection_id']} {conn['status']}; run {run['run_id']} {run['status']} "
              f"after {run['attempts']} attempt(s), vendor answered {out['response']['status']}")
    vendor.shutdown()
    return 0 if run["status"] == "Completed" else 1


if __name__ == "__main__":
    sys.exit(main())
