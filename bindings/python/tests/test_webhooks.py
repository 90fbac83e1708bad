"""Outbound webhooks from Python: subscribe (the signing secret handed over once), publish, a
delivery received and verified by a receiver on 127.0.0.1 with its own Standard Webhooks HMAC,
attempts read back, rotate, replay, recover."""

import hmac
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest

import integration
from conftest import Logs, Vendor, standard_signature


def wait_for(what: str, check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def signed_by(secret: bytes, request: dict[str, Any]) -> bool:
    """Whether one of the request's `webhook-signature` entries is `secret`'s, compared in constant time."""
    headers = {k.lower(): v for k, v in request["headers"].items()}
    expected = standard_signature(secret, headers["webhook-id"], headers["webhook-timestamp"], request["raw"])
    return any(hmac.compare_digest(expected, s) for s in headers["webhook-signature"].split())


def hooks(vendor: Vendor, path: str) -> list[dict[str, Any]]:
    with vendor.lock:
        return [r for r in vendor.requests if r["path"] == path]


def test_a_delivery_is_signed_with_the_secret_handed_over_once(platform: integration.Platform, vendor: Vendor,
                                                               logs: Logs) -> None:
    t = platform.tenant("shop")
    sub = t.subscribe(project_id="shop", event_type="order.*", endpoint_url=f"{vendor.url}/hooks/orders")
    secret = sub["signing_secret"]
    assert isinstance(secret, integration.SecretBytes) and isinstance(secret, bytes) and secret.startswith(b"whsec_")
    assert sub["active"] is True and "signing_secret" not in t.get_subscription(sub["subscription_id"])
    shown = [repr(sub), str(sub), repr(secret), str(secret), f"{secret}"]
    assert all(secret.decode() not in text and secret[6:].decode() not in text for text in shown)

    pub = t.publish("order.paid", {"orderId": "o-1", "total_cents": 1250}, idempotency_key="order-o-1-paid")
    assert len(pub["delivery_ids"]) == 1 and pub["repeated"] is False
    assert t.publish("order.paid", {"orderId": "o-1", "total_cents": 1250},
                     idempotency_key="order-o-1-paid")["repeated"] is True
    delivery_id = pub["delivery_ids"][0]

    wait_for("the delivery", lambda: t.get_delivery(delivery_id)["status"] == "Delivered")
    [received] = hooks(vendor, "/hooks/orders")
    assert signed_by(secret, received)
    tampered = dict(received, raw=received["raw"].replace(b"1250", b"1251"))
    assert not signed_by(secret, tampered)
    headers = {k.lower(): v for k, v in received["headers"].items()}
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 300
    assert b'"total_cents":1250' in received["raw"].replace(b" ", b"")

    # The delivery, read back with its attempts.
    delivery = t.get_delivery(delivery_id)
    assert delivery["subscription_id"] == sub["subscription_id"] and delivery["attempts"] == 1
    [attempt] = delivery["delivery_attempts"]
    assert attempt["http_status"] == 200 and isinstance(attempt["attempted_at"], datetime)
    assert isinstance(delivery["metadata"]["created_at"], datetime)
    listed = t.list_deliveries(subscription_id=sub["subscription_id"], direction="Outbound",
                               since=datetime.now(timezone.utc) - timedelta(hours=1))
    assert [d["delivery_id"] for d in listed["items"]] == [delivery_id]
    assert listed["items"][0]["delivery_attempts"][0]["http_status"] == 200

    # A new secret, handed over once; the replay is signed with it (and the old one, while it overlaps).
    rotated = t.rotate_subscription_secret(sub["subscription_id"])
    new_secret = rotated["signing_secret"]
    assert isinstance(new_secret, integration.SecretBytes) and new_secret != secret
    assert new_secret.decode() not in repr(rotated)
    t.replay_delivery(delivery_id)
    wait_for("the replay", lambda: len(hooks(vendor, "/hooks/orders")) == 2)
    replayed = hooks(vendor, "/hooks/orders")[1]
    assert signed_by(new_secret, replayed) and signed_by(secret, replayed)
    assert replayed["headers"]["webhook-id"] == received["headers"]["webhook-id"]
    wait_for("the replay's attempt", lambda: t.get_delivery(delivery_id)["attempts"] == 2)

    assert t.deactivate_subscription(sub["subscription_id"])["active"] is False
    assert t.reactivate_subscription(sub["subscription_id"])["active"] is True
    assert [s["subscription_id"] for s in t.list_subscriptions()["items"]] == [sub["subscription_id"]]
    for line in logs.lines:
        assert secret.decode() not in line and new_secret.decode() not in line


def test_recover_sends_the_dead_lettered_deliveries_again(platform: integration.Platform) -> None:
    down = Vendor(status=503)
    try:
        t = platform.tenant("shop")
        sub = t.subscribe(project_id="shop", event_type="order.*", endpoint_url=f"{down.url}/hooks",
                          attempt_policy={"max_attempts": 1})
        since = datetime.now(timezone.utc) - timedelta(minutes=1)
        delivery_id = t.publish("order.paid", {"orderId": "o-2"})["delivery_ids"][0]
        wait_for("the dead letter", lambda: t.get_delivery(delivery_id)["status"] == "DeadLettered")
        failed = t.get_delivery(delivery_id)
        assert failed["attempts"] == 1 and failed["delivery_attempts"][0]["http_status"] == 503

        down.status = 200
        assert t.recover_subscription(sub["subscription_id"], since=since) == [delivery_id]
        wait_for("the recovered delivery", lambda: t.get_delivery(delivery_id)["status"] == "Delivered")
        assert [a["http_status"] for a in t.get_delivery(delivery_id)["delivery_attempts"]] == [503, 200]
        assert signed_by(sub["signing_secret"], hooks(down, "/hooks")[-1])
    finally:
        down.close()


def test_webhook_errors_are_the_module_exceptions(platform: integration.Platform, vendor: Vendor) -> None:
    t = platform.tenant("shop")
    with pytest.raises(integration.NotFound) as missing:
        t.rotate_subscription_secret("sub-missing")
    assert missing.value.code == "not_found"
    with pytest.raises(integration.InvalidArgument):
        t.subscribe(project_id="shop", event_type="order.*", endpoint_url=f"{vendor.url}/hooks",
                    filter={"$nope": 1})
    with pytest.raises(TypeError, match="unexpected keyword argument 'endpoint'"):
        t.subscribe(project_id="shop", event_type="order.*", endpoint=vendor.url)  # type: ignore[call-arg]
    with pytest.raises(integration.NotFound):
        t.replay_delivery("dlv-missing")
