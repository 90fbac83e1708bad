"""The README walkthrough from Python: provider → credential → connection → run → read back."""

import json
import sqlite3
from datetime import datetime, timezone

import pytest

import integration
from conftest import Vendor, connect


def test_walkthrough_run_reads_back_with_its_attempts(platform: integration.Platform, vendor: Vendor) -> None:
    t = platform.tenant("acme-corp", "alice")
    connection_id = connect(t, vendor.url)

    out = t.execute(connection_id=connection_id, operation="sms.send", path_params={"account": "AC1"},
                    body={"to": "+15550100"}, idempotency_key="order-42")
    assert out["status"] == "Completed"
    assert out["response"]["status"] == 200
    assert json.loads(out["response"]["body"])["id"] == "SM-0001"
    assert out["failure_id"] is None and out["replayed"] is False

    seen = [r for r in vendor.requests if r["path"] == "/v1/accounts/AC1/messages"]
    assert len(seen) == 1
    assert seen[0]["method"] == "POST" and json.loads(seen[0]["body"]) == {"to": "+15550100"}
    assert seen[0]["headers"]["Content-Type"] == "application/json"

    run = t.get_run(out["run_id"])
    assert run["status"] == "Completed" and run["operation"] == "sms.send"
    assert run["connection_id"] == connection_id and run["idempotency_key"] == "order-42"
    assert isinstance(run["started_at"], datetime) and run["started_at"].tzinfo == timezone.utc
    assert run["started_at"] <= run["completed_at"] <= datetime.now(timezone.utc)
    assert run["metadata"]["created_by"] == "alice"
    attempts = run["run_attempts"]
    assert [a["attempt"] for a in attempts] == [1]
    assert attempts[0]["http_status"] == 200 and isinstance(attempts[0]["started_at"], datetime)

    again = t.execute(connection_id=connection_id, operation="sms.send", path_params={"account": "AC1"},
                      body={"to": "+15550100"}, idempotency_key="order-42")
    assert again["replayed"] is True and again["run_id"] == out["run_id"]
    assert len([r for r in vendor.requests if r["path"] == "/v1/accounts/AC1/messages"]) == 1

    page = t.list_runs(connection_id=connection_id, status="Completed")
    assert [r["run_id"] for r in page["items"]] == [out["run_id"]] and page["next_cursor"] is None
    assert t.get_connection(connection_id)["status"] == "Active"
    assert len(t.list_providers()["items"]) == 1


def test_a_failed_run_has_a_failure_to_read_and_escalate(tmp_path: str, vendor: Vendor) -> None:
    vendor.status = 400
    with integration.open(data_dir=f"{tmp_path}/data", egress_allow=["127.0.0.0/8"], max_attempts=1,
                          deferred_retries=0) as p:
        t = p.tenant("acme-corp", "alice")
        connection_id = connect(t, vendor.url)
        out = t.execute(connection_id=connection_id, operation="sms.send", path_params={"account": "AC1"})
        assert out["status"] == "Failed" and out["response"]["status"] == 400
        failure = t.get_failure(out["failure_id"])
        assert failure["run_id"] == out["run_id"]
        assert [f["failure_id"] for f in t.list_failures(run_id=out["run_id"])["items"]] == [out["failure_id"]]
        escalated = t.escalate_failure(out["failure_id"], reason="vendor refuses the account", ticket_ref="OPS-1")
        assert escalated["failure_id"] == out["failure_id"]


def test_a_dead_outbox_events_failure_is_replayed_or_resolved(tmp_path: str, vendor: Vendor) -> None:
    vendor.status = 400
    with integration.open(data_dir=f"{tmp_path}/data", egress_allow=["127.0.0.0/8"], max_attempts=1,
                          deferred_retries=0) as p:
        t = p.tenant("acme-corp", "alice")
        connection_id = connect(t, vendor.url)
        out = t.execute(connection_id=connection_id, operation="sms.send", path_params={"account": "AC1"})
        with pytest.raises(integration.InvalidState):
            t.replay_failure(out["failure_id"])  # a run's failure: the run is run again, not replayed
        # The relay parking the run's last event, as the store keeps it: the event dead, and a
        # failure of source OutboxEvent naming it (the run's, re-sourced).
        db = sqlite3.connect(f"{tmp_path}/data/integration.db", timeout=10)
        (event_id,) = db.execute("SELECT event_id FROM outbox WHERE aggregate_id = ? ORDER BY sequence DESC LIMIT 1",
                                 (out["run_id"],)).fetchone()
        with db:
            db.execute("UPDATE outbox SET published_at = NULL, dead_at = 1, attempts = 20 WHERE event_id = ?", (event_id,))
            db.execute("UPDATE failures SET source = 'OutboxEvent', run_id = NULL, event_id = ?, next_action = 'DeadLetter', "
                       "resolved_at = NULL WHERE failure_id = ?", (event_id, out["failure_id"]))
        with pytest.raises(integration.NotFound):
            p.tenant("other-corp").replay_failure(out["failure_id"])
        replayed = t.replay_failure(out["failure_id"])
        assert replayed["source"] == "OutboxEvent" and replayed["event_id"] == event_id
        assert replayed["resolved_at"] is not None
        assert db.execute("SELECT dead_at IS NULL, attempts FROM outbox WHERE event_id = ?", (event_id,)).fetchone() == (1, 0)
        with pytest.raises(integration.InvalidState):
            t.replay_failure(out["failure_id"])
        # Parked again and resolved by hand instead: the event is dropped, never offered again.
        with db:
            db.execute("UPDATE outbox SET published_at = NULL, dead_at = 1, attempts = 20 WHERE event_id = ?", (event_id,))
            db.execute("UPDATE failures SET resolved_at = NULL WHERE failure_id = ?", (out["failure_id"],))
        with pytest.raises(integration.InvalidArgument):
            t.resolve_failure(out["failure_id"], outcome="Whatever")
        assert t.resolve_failure(out["failure_id"])["resolved_at"] is not None
        assert db.execute("SELECT dead_at IS NULL AND published_at IS NOT NULL FROM outbox WHERE event_id = ?",
                          (event_id,)).fetchone() == (1,)
        db.close()


def test_credentials_rotate_and_revoke(platform: integration.Platform, vendor: Vendor) -> None:
    t = platform.tenant("acme-corp", "alice")
    connection_id = connect(t, vendor.url, secret=b"first-key-bytes")
    credential_id = t.get_connection(connection_id)["credential_id"]
    assert t.get_credential(credential_id)["active_version"] == 1

    rotated = t.rotate_credential(credential_id, secret=b"second-key-bytes")
    assert rotated["active_version"] == 2
    t.execute(connection_id=connection_id, operation="sms.send", path_params={"account": "AC1"})
    assert vendor.requests[-1]["headers"]["X-Api-Key"] == "second-key-bytes"

    revoked = t.revoke_credential(credential_id, reason="leaked")
    assert revoked["status"] == "Revoked"
    assert [c["credential_id"] for c in t.list_credentials()["items"]] == [credential_id]


def test_tenants_see_only_their_own_data(platform: integration.Platform, vendor: Vendor) -> None:
    a = platform.tenant("tenant-a")
    connection_id = connect(a, vendor.url)
    b = platform.tenant("tenant-b")
    assert b.list_connections()["items"] == []
    try:
        b.get_connection(connection_id)
    except integration.NotFound:
        pass
    else:
        raise AssertionError("another tenant's connection was visible")


def test_execute_returns_the_run_as_get_run_reads_it(platform: integration.Platform, vendor: Vendor) -> None:
    # execute renders its result on its own path (module.cpp's render_outcome, the one a faster
    # result would change): the same values and plain types as the stored run, whatever str type
    # the caller passed.
    class Name(str):
        pass

    t = platform.tenant("acme-corp", "bob")
    connection_id = connect(t, vendor.url)
    out = t.execute(connection_id=Name(connection_id), operation=Name("sms.send"), path_params={"account": "AC1"})
    run = t.get_run(out["run_id"])
    assert {k: v for k, v in out.items() if k not in ("response", "failure_id", "replayed")} == run
    for key in ("connection_id", "operation", "run_id"):
        assert type(out[key]) is str
    assert out["metadata"]["tenant_id"] == "acme-corp" and out["metadata"]["created_by"] == "bob"
    later = t.execute(connection_id=connection_id, operation="sms.send", path_params={"account": "AC1"})
    assert later["started_at"] >= out["started_at"] and later["metadata"] == t.get_run(later["run_id"])["metadata"]
