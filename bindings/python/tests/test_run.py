"""A run is an `integration.Run`: a read-only mapping that owns the C++ run and builds each value
when it is read, with the keys, values and types of the dict the module returned before."""

import gc
import json
from collections.abc import ItemsView, KeysView, Mapping, ValuesView
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import integration
from conftest import Vendor, connect


def same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (1 == 1.0 == True would hide a changed type)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def test_a_run_is_the_dict_the_old_code_rendered(platform: integration.Platform, vendor: Vendor) -> None:
    t = platform.tenant("acme-corp", "alice")
    connection_id = connect(t, vendor.url)
    vendor.extra_headers = {"Link": ["<p2>; rel=next", "<p9>; rel=last"]}
    out = t.execute(connection_id=connection_id, operation="sms.send", path_params={"account": "AC1"},
                    body={"to": "+15550100"}, idempotency_key="order-7")
    assert type(out) is integration.Run and isinstance(out, Mapping) and not isinstance(out, dict)

    # `_run_as_dict` renders the stored run as get_run did before (module.cpp's `render`, as for
    # every other aggregate): the same keys in the same order, values and types, datetimes included.
    old = integration._run_as_dict(t, out["run_id"])
    assert isinstance(old["started_at"], datetime) and old["started_at"].tzinfo == timezone.utc
    assert old["run_attempts"] and isinstance(old["run_attempts"][0]["started_at"], datetime)
    assert old["idempotency_key"] == "order-7" and "external_ref" not in old  # set and unset optionals
    # The run's key again with another request is refused, not answered with this run.
    with pytest.raises(integration.IdempotencyKeyReused):
        t.execute(connection_id=connection_id, operation="sms.send", path_params={"account": "AC1"},
                  body={"to": "+15550199"}, idempotency_key="order-7")
    # A publication's key again with another payload is never worth retrying: not the
    # `Conflict` of a race.
    t.publish("order.paid", {"order": 7}, idempotency_key="order-7-paid")
    with pytest.raises(integration.IdempotencyKeyReused):
        t.publish("order.paid", {"order": 8}, idempotency_key="order-7-paid")
    assert not issubclass(integration.IdempotencyKeyReused, integration.Conflict)

    run = t.get_run(out["run_id"])
    assert type(run) is integration.Run
    assert same(dict(run), old)
    listed = t.list_runs(connection_id=connection_id)["items"]
    assert [type(r) for r in listed] == [integration.Run] and same(dict(listed[0]), old)

    # execute's: the run's keys, then what only execute returns, as render_outcome built them.
    executed = dict(out)
    assert list(executed) == list(old) + ["response", "failure_id", "replayed"]
    assert same({k: executed[k] for k in old}, old)
    response = executed["response"]
    assert type(response) is integration.Response and isinstance(response, Mapping)
    assert not isinstance(response, dict)
    assert list(response) == ["status", "headers", "body"] and type(response["status"]) is int
    assert response["status"] == 200 and type(response["body"]) is bytes
    assert json.loads(response["body"])["id"] == "SM-0001"
    assert type(response["headers"]) is dict and response["headers"]["Content-Type"] == "application/json"
    assert executed["failure_id"] is None and executed["replayed"] is False

    # dict(response) is the dict render_outcome built: status an int, headers a dict of str (the
    # vendor's, as sent), body the vendor's bytes.
    body = response["body"]
    headers = response["headers"]
    assert headers["Content-Length"] == str(len(body)) and {"Server", "Date"} <= set(headers)
    assert headers["Link"] == "<p2>; rel=next, <p9>; rel=last"  # a repeated field keeps every line
    assert all(type(k) is str and type(v) is str for k, v in headers.items())
    assert same(dict(response), {"status": 200, "headers": headers, "body": body})
    # A run equals the plain dict it was before, its response a dict too, either way round.
    plain = {**old, "response": {"status": 200, "headers": headers, "body": body}, "failure_id": None,
             "replayed": False}
    assert out == plain and plain == out and out["response"] == plain["response"] and executed == plain


def test_a_failed_run_has_its_failure_and_response(tmp_path: Path, vendor: Vendor) -> None:
    vendor.status = 400
    with integration.open(data_dir=str(tmp_path / "data"), egress_allow=["127.0.0.0/8"], max_attempts=1,
                          deferred_retries=0) as p:
        t = p.tenant("acme-corp")
        out = t.execute(connection_id=connect(t, vendor.url), operation="sms.send", path_params={"account": "AC1"})
        assert out["status"] == "Failed" and out["response"]["status"] == 400
        assert type(out["failure_id"]) is str and t.get_failure(out["failure_id"])["run_id"] == out["run_id"]
        assert same({k: v for k, v in out.items() if k not in ("response", "failure_id", "replayed")},
                    integration._run_as_dict(t, out["run_id"]))


def test_a_post_is_sent_again_only_when_that_cannot_act_twice(tmp_path: Path, vendor: Vendor) -> None:
    """A vendor answering 503 may have acted on the POST: without an idempotency key it is not sent
    again and its failure escalates; with the operation's idempotency header each attempt carries
    the run's id, and the run is retried."""
    vendor.status = 503
    calls = lambda: [r for r in vendor.requests if r["path"] != "/health"]  # noqa: E731
    with integration.open(data_dir=str(tmp_path / "data"), egress_allow=["127.0.0.0/8"], max_attempts=2,
                          deferred_retries=0) as p:
        t = p.tenant("acme-corp")
        once = t.execute(connection_id=connect(t, vendor.url), operation="sms.send", path_params={"account": "AC1"})
        assert once["status"] == "Failed" and len(calls()) == 1
        failure = t.get_failure(once["failure_id"])
        assert failure["next_action"] == "Escalate" and "not sent again" in failure["message"], failure

        keyed = connect(t, vendor.url, key="acme-keyed", idempotency_header="Idempotency-Key")
        twice = t.execute(connection_id=keyed, operation="sms.send", path_params={"account": "AC1"})
        assert twice["status"] == "Failed" and len(calls()) == 3
        assert [r["headers"].get("Idempotency-Key") for r in calls()[1:]] == [twice["run_id"]] * 2
        assert t.get_failure(twice["failure_id"])["next_action"] == "DeadLetter"
    assert issubclass(integration.ConnectionLost, integration.Error)
    assert issubclass(integration.ConnectionLost, ConnectionError)


def test_a_run_reads_as_a_mapping(platform: integration.Platform, vendor: Vendor) -> None:
    t = platform.tenant("acme-corp", "alice")
    out = t.execute(connection_id=connect(t, vendor.url), operation="sms.send", path_params={"account": "AC1"})
    d = dict(out)

    assert len(out) == len(d) and list(out) == list(d) and list(iter(out)) == list(d)
    assert out.keys() == d.keys() and isinstance(out.keys(), KeysView)
    assert list(out.items()) == list(d.items()) and isinstance(out.items(), ItemsView)
    assert list(out.values()) == list(d.values()) and isinstance(out.values(), ValuesView)
    assert "status" in out and "idempotency_key" not in out and 3 not in out
    assert out["".join(["sta", "tus"])] == "Completed"  # a key made at run time
    assert out.get("status") == "Completed" and out.get("idempotency_key") is None and out.get("x", 5) == 5
    with pytest.raises(KeyError):
        out["idempotency_key"]  # an unset optional is no key, as it was no key of the dict
    with pytest.raises(KeyError) as caught:
        out[("a", "b")]
    assert caught.value.args == (("a", "b"),)
    with pytest.raises(TypeError):
        [] in out  # unhashable, as for a dict
    with pytest.raises(TypeError):
        out.get()  # type: ignore[call-overload]

    # Equal to a dict with the same content, either way round, and to another Run of the same run.
    assert out == d and d == out and not (out != d)
    assert out != {**d, "status": "Failed"} and out != {k: v for k, v in d.items() if k != "replayed"}
    assert out != [("status", "Completed")] and out != "Completed"
    again = t.get_run(out["run_id"])
    assert again == integration._run_as_dict(t, out["run_id"]) and again == t.get_run(out["run_id"])
    assert again != out  # execute's has response, failure_id and replayed too

    match out:
        case {"status": "Completed", "response": {"status": 200}}:
            pass
        case _:
            raise AssertionError("a Run matches a mapping pattern")

    # Read-only: no item assignment, no hash; a value read is the caller's to change.
    with pytest.raises(TypeError):
        out["status"] = "Failed"  # type: ignore[index]
    with pytest.raises(TypeError):
        del out["status"]  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        hash(out)
    with pytest.raises(TypeError):
        integration.Run()
    out["metadata"]["tenant_id"] = "someone-else"
    out["response"]["headers"].clear()
    assert out["metadata"]["tenant_id"] == "acme-corp" and out["response"]["headers"]
    assert repr(out).startswith("integration.Run({'run_id': ") and repr(out) == f"integration.Run({d!r})"


def test_a_response_reads_as_a_mapping(platform: integration.Platform, vendor: Vendor) -> None:
    t = platform.tenant("acme-corp", "alice")
    response = t.execute(connection_id=connect(t, vendor.url), operation="sms.send",
                         path_params={"account": "AC1"})["response"]
    d = dict(response)

    assert len(response) == 3 and list(response) == list(d) == ["status", "headers", "body"]
    assert response.keys() == d.keys() and isinstance(response.keys(), KeysView)
    assert list(response.items()) == list(d.items()) and isinstance(response.items(), ItemsView)
    assert list(response.values()) == list(d.values()) and isinstance(response.values(), ValuesView)
    assert "body" in response and "run_id" not in response and "status" in response
    assert response["".join(["hea", "ders"])] == d["headers"]  # a key made at run time
    assert response.get("status") == 200 and response.get("run_id") is None and response.get("x", 5) == 5
    with pytest.raises(KeyError) as caught:
        response["run_id"]
    assert caught.value.args == ("run_id",)
    with pytest.raises(TypeError):
        {} in response

    assert response == d and d == response and response != {**d, "status": 500}
    assert response != list(d.items())
    match response:
        case {"status": 200, "body": bytes()}:
            pass
        case _:
            raise AssertionError("a Response matches a mapping pattern")

    with pytest.raises(TypeError):
        response["status"] = 500  # type: ignore[index]
    with pytest.raises(TypeError):
        hash(response)
    with pytest.raises(TypeError):
        integration.Response()
    response["headers"].clear()
    assert response["headers"] == d["headers"] and response["headers"]
    assert repr(response) == f"integration.Response({d!r})"


def test_a_run_owns_its_data_after_the_platform_is_closed(tmp_path: Path, vendor: Vendor) -> None:
    with integration.open(data_dir=str(tmp_path / "data"), egress_allow=["127.0.0.0/8"]) as p:
        t = p.tenant("acme-corp", "alice")
        out = t.execute(connection_id=connect(t, vendor.url), operation="sms.send", path_params={"account": "AC1"})
        run_id = out["run_id"]
        response = out["response"]  # read before the platform closes, its values after
        run = t.get_run(run_id)
        listed = t.list_runs()["items"]
        old = integration._run_as_dict(t, run_id)
    assert p.closed
    del t, p
    # Nothing but the id was read before here: every value is built now, from the runs' own data.
    assert same(dict(run), old) and same(dict(listed[0]), old)
    assert same({k: out[k] for k in old}, old) and out["response"]["status"] == 200
    assert out["response"]["body"] and run["run_attempts"][0]["attempt"] == 1 and "Completed" in repr(listed[0])
    # The response keeps the run it reads from alive: with the platform and the run gone, it reads
    # the same as the run's.
    expected = dict(out["response"])
    del out
    gc.collect()
    assert same(dict(response), expected) and json.loads(response["body"])["id"] == "SM-0001"
