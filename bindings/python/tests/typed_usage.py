"""A small typed program over the module, checked with mypy --strict by test_typing.py."""

import hashlib
import hmac
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import integration


def governed_run(data_dir: str, vendor_url: str) -> Optional[int]:
    with integration.open(data_dir=data_dir, egress_allow=["127.0.0.0/8"], max_attempts=2) as p:
        t: integration.Tenant = p.tenant("acme-corp", "alice")
        provider = t.register_provider(key="acme", display_name="Acme", base_url=vendor_url,
                                       capabilities=["sms.send"])
        client = t.register_client(str(provider["provider_id"]), assembly_name="Acme.Sms", version="1.0.0",
                                   operations=[{"operation": "sms.send", "method": "POST", "path": "/v1/messages"}])
        t.activate_client(str(client["api_client_id"]))
        t.activate_provider(str(provider["provider_id"]))
        key = t.create_credential(provider_id=str(provider["provider_id"]), secret=b"s3cr3t",
                                  expires_at=datetime.now(timezone.utc) + timedelta(days=90))
        conn = t.create_connection(provider_id=str(provider["provider_id"]), project_id="p1", display_name="Acme",
                                   credential_id=str(key["credential_id"]))
        try:
            out = t.execute(connection_id=str(conn["connection_id"]), operation="sms.send", body={"to": "+1555"})
        except integration.NotFound as e:
            print(e.code, e.detail)
            return None
        runs: integration.RunPage = t.list_runs(status="Completed", limit=10)
        cursor: Optional[str] = runs["next_cursor"]
        run: integration.Run = t.get_run(str(out["run_id"]))
        started: Optional[datetime] = run.get("started_at")
        as_dict: dict[str, Any] = dict(run)
        print(cursor, len(runs["items"]), started, run["status"], "idempotency_key" in run, run == as_dict)
        for name, field in out.items():
            print(name, field)
        pub: integration.Publication = t.publish("order.paid", {"orderId": "o-1"})
        delivery_ids: list[str] = pub["delivery_ids"]
        print(delivery_ids, integration.__version__)
        sub = t.subscribe(project_id="p1", event_type="order.*", endpoint_url=f"{vendor_url}/hooks")
        signing: integration.SecretBytes = sub["signing_secret"]
        deliveries: integration.Page = t.list_deliveries(direction="Outbound", since=datetime.now(timezone.utc))
        print(len(signing), len(deliveries["items"]), t.recover_subscription(str(sub["subscription_id"]),
                                                                            since=datetime.now(timezone.utc)))
        endpoint: integration.InboundEndpoint = t.register_inbound_endpoint(
            str(conn["connection_id"]), scheme="github", secret=b"gh-secret")
        body = b'{"zen":"Keep it simple."}'
        signature = "sha256=" + hmac.new(b"gh-secret", body, hashlib.sha256).hexdigest()
        received: integration.InboundOutcome = p.receive_webhook(
            endpoint["connection_id"], body=body, url="https://hooks.example.com/in",
            headers={"X-GitHub-Event": "ping", "X-GitHub-Delivery": "d-1", "X-Hub-Signature-256": signature})
        if received["outcome"] == "accepted" and received["delivery_id"] is not None:
            payload: bytes = t.get_inbound_payload(received["delivery_id"])
            print(len(payload), received["signed_at"])
        else:
            print(received["reason"], received["detail"])
        response: Optional[integration.Response] = out["response"]
        if response is None:
            return None
        status: int = response["status"]
        headers: dict[str, Any] = dict(response)
        print(len(response), "body" in response, headers["headers"], response == headers)
        return status
