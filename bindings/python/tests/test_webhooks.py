"""Outbound webhooks from Python: subscribe, publish, read the delivery, replay it."""

import time
from datetime import datetime, timedelta, timezone
from typing import Callable

import integration
from conftest import Vendor


def wait_for(what: str, check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_publish_delivers_and_replays(platform: integration.Platform, vendor: Vendor) -> None:
    t = platform.tenant("shop")
    sub = t.subscribe(project_id="shop", event_type="order.*", endpoint_url=f"{vendor.url}/hooks/orders")
    assert sub["active"] is True and sub["signing_secret"].startswith("whsec_")
    assert "signing_secret" not in t.get_subscription(sub["subscription_id"])

    pub = t.publish("order.paid", {"orderId": "o-1", "total_cents": 1250}, idempotency_key="order-o-1-paid")
    assert len(pub["delivery_ids"]) == 1 and pub["repeated"] is False
    assert t.publish("order.paid", {"orderId": "o-1", "total_cents": 1250},
                     idempotency_key="order-o-1-paid")["repeated"] is True
    delivery_id = pub["delivery_ids"][0]

    wait_for("the delivery", lambda: t.get_delivery(delivery_id)["status"] == "Delivered")
    hooks = [r for r in vendor.requests if r["path"] == "/hooks/orders"]
    assert len(hooks) == 1 and '"total_cents":1250' in hooks[0]["body"].replace(" ", "")
    assert "webhook-signature" in {k.lower() for k in hooks[0]["headers"]}

    delivery = t.get_delivery(delivery_id)
    assert delivery["subscription_id"] == sub["subscription_id"] and isinstance(delivery["metadata"]["created_at"], datetime)
    listed = t.list_deliveries(subscription_id=sub["subscription_id"], direction="Outbound",
                               since=datetime.now(timezone.utc) - timedelta(hours=1))
    assert [d["delivery_id"] for d in listed["items"]] == [delivery_id]

    t.replay_delivery(delivery_id)
    wait_for("the replay", lambda: len([r for r in vendor.requests if r["path"] == "/hooks/orders"]) == 2)

    rotated = t.rotate_subscription_secret(sub["subscription_id"])
    assert rotated["signing_secret"].startswith("whsec_") and rotated["signing_secret"] != sub["signing_secret"]
    assert t.deactivate_subscription(sub["subscription_id"])["active"] is False
    assert t.reactivate_subscription(sub["subscription_id"])["active"] is True
    assert [s["subscription_id"] for s in t.list_subscriptions()["items"]] == [sub["subscription_id"]]
