"""Inbound webhooks from Python: a connection registered for a scheme, requests signed here as the
vendor signs them, received as raw bytes: accepted, a duplicate, a one-byte change rejected; the
payload read back as received; the secret never shown."""

import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from email.message import Message
from pathlib import Path

import pytest

import integration
from conftest import Logs, Vendor, connect, standard_signature


def github_request(secret: bytes, body: bytes, delivery: str, event: str = "push") -> dict[str, str]:
    """GitHub's headers: `X-Hub-Signature-256` is `sha256=` + hex HMAC-SHA256 of the raw body."""
    return {"Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()}


def test_github_delivery_accepted_then_duplicate_then_a_changed_byte_rejected(
        tmp_path: Path, vendor: Vendor, capfd: pytest.CaptureFixture[str]) -> None:
    secret = f"canary-{uuid.uuid4().hex}".encode()
    logs = Logs()
    seen: list[str] = []
    with integration.open(data_dir=str(tmp_path / "data"), egress_allow=["127.0.0.0/8"], log=logs) as p:
        t = p.tenant("acme-corp", "alice")
        connection_id = connect(t, vendor.url)
        endpoint = t.register_inbound_endpoint(connection_id, scheme="github", secret=secret)
        assert endpoint == {"connection_id": connection_id, "scheme": "github"}

        body = json.dumps({"ref": "refs/heads/main", "commits": [{"id": "c0ffee"}]}, indent=1).encode()
        headers = github_request(secret, body, "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        url = f"https://hooks.example.com/webhooks/inbound/{connection_id}"
        accepted = p.receive_webhook(connection_id, headers=headers, body=body, url=url)
        assert accepted["outcome"] == "accepted", accepted
        assert accepted["tenant_id"] == "acme-corp" and accepted["event_type"] == "github.push"
        assert accepted["provider_delivery_id"] == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
        assert accepted["reason"] is None and accepted["signed_at"] is None  # GitHub signs no timestamp
        delivery_id = accepted["delivery_id"]
        assert delivery_id

        # The same request again, its headers as (name, value) pairs: a duplicate, nothing new.
        again = p.receive_webhook(connection_id, headers=list(headers.items()), body=bytearray(body), url=url)
        assert again["outcome"] == "duplicate" and again["delivery_id"] == delivery_id

        # One byte changed under the same signature: rejected, and recorded as a failed delivery.
        changed = body.replace(b"c0ffee", b"c0ffef")
        assert len(changed) == len(body) and changed != body
        rejected = p.receive_webhook(connection_id, headers=headers, body=changed, url=url)
        assert rejected["outcome"] == "rejected" and rejected["reason"] == "signature-mismatch", rejected
        assert rejected["tenant_id"] == "acme-corp" and rejected["detail"]
        seen += [repr(accepted), repr(again), repr(rejected), str(rejected["detail"])]

        # What was accepted is kept exactly as received.
        assert t.get_inbound_payload(delivery_id) == body
        inbound = t.list_deliveries(direction="Inbound", connection_id=connection_id)["items"]
        by_id = {d["delivery_id"]: d for d in inbound}
        assert by_id[delivery_id]["status"] == "Accepted" and by_id[delivery_id]["signature_status"] == "Verified"
        assert by_id[delivery_id]["event_type"] == "github.push"
        assert any(d["status"] == "Failed" for d in inbound)
        assert len(t.list_failures(unresolved_only=False)["items"]) >= 1

        # Another tenant sees none of it; an unknown connection touches no tenant.
        with pytest.raises(integration.NotFound):
            p.tenant("other").get_inbound_payload(delivery_id)
        unknown = p.receive_webhook("conn-missing", headers=headers, body=body)
        assert unknown["outcome"] == "rejected" and unknown["reason"] == "unknown-connection"
        assert unknown["tenant_id"] is None

        # A rotated secret verifies at once; the previous one keeps verifying while they overlap.
        new_secret = f"canary-{uuid.uuid4().hex}".encode()
        assert t.rotate_inbound_secret(connection_id, secret=new_secret)["scheme"] == "github"
        for key, delivery in ((new_secret, "d-new"), (secret, "d-old")):
            out = p.receive_webhook(connection_id, headers=github_request(key, body, delivery), body=body, url=url)
            assert out["outcome"] == "accepted", out

        for bad in (lambda: t.register_inbound_endpoint(connection_id, scheme="carrier-pigeon", secret=secret),
                    lambda: t.register_inbound_endpoint("conn-missing", scheme="github", secret=secret),
                    lambda: t.rotate_inbound_secret("conn-missing", secret=secret)):
            with pytest.raises(integration.Error) as caught:
                bad()
            seen += [str(caught.value), repr(caught.value), caught.value.detail]
        seen += [repr(p), repr(t)]
    captured = capfd.readouterr()
    seen += logs.lines + [captured.out, captured.err]
    for text in seen:
        assert secret.decode() not in text and new_secret.decode() not in text


def test_standard_webhooks_request_from_an_http_message(platform: integration.Platform, vendor: Vendor) -> None:
    t = platform.tenant("acme-corp")
    connection_id = connect(t, vendor.url)
    secret = b"whsec_" + base64.b64encode(os.urandom(32))
    t.register_inbound_endpoint(connection_id, scheme="standard", secret=secret)
    body = b'{"type":"invoice.paid","data":{"id":"in_1"}}'
    stamp = str(int(time.time()))
    headers = Message()  # what http.server hands a handler (self.headers)
    headers["Content-Type"] = "application/json"
    headers["webhook-id"] = "msg_1"
    headers["webhook-timestamp"] = stamp
    headers["webhook-signature"] = standard_signature(secret, "msg_1", stamp, body)
    out = platform.receive_webhook(connection_id, headers=headers, body=memoryview(body))
    assert out["outcome"] == "accepted", out
    assert out["event_type"] == "standard.invoice.paid" and out["provider_delivery_id"] == "msg_1"
    assert isinstance(out["signed_at"], datetime) and int(out["signed_at"].timestamp()) == int(stamp)

    old = str(int(time.time()) - 3600)
    headers.replace_header("webhook-timestamp", old)
    headers.replace_header("webhook-signature", standard_signature(secret, "msg_1", old, body))
    assert platform.receive_webhook(connection_id, headers=headers, body=body)["reason"] == "stale-timestamp"


def test_receives_from_many_threads(platform: integration.Platform, vendor: Vendor) -> None:
    t = platform.tenant("acme-corp")
    connection_id = connect(t, vendor.url)
    secret = b"thread-secret"
    t.register_inbound_endpoint(connection_id, scheme="github", secret=secret)

    def receive(i: int) -> str:
        body = json.dumps({"n": i}).encode()
        return platform.receive_webhook(connection_id, headers=github_request(secret, body, f"d-{i}"),
                                        body=body)["outcome"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(receive, range(64)))
    assert outcomes == ["accepted"] * 64


def test_bad_arguments_are_type_errors(platform: integration.Platform) -> None:
    with pytest.raises(TypeError, match="body must be bytes"):
        platform.receive_webhook("conn-1", headers={}, body="text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="headers must be"):
        platform.receive_webhook("conn-1", headers="X-A: b", body=b"")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="header names and values must be str"):
        platform.receive_webhook("conn-1", headers={"X-A": 1}, body=b"")  # type: ignore[dict-item]
