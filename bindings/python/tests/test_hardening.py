"""What a Python caller can hand the binding by mistake, and the process events around it (fork,
interpreter exit, a second close): each is a clear Python error or a clean stop, never a crash,
a hang, a wrapped value or a secret in a message."""

import math
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pytest

import integration
from conftest import Vendor, connect

TESTS = Path(__file__).resolve().parent


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter with this one's module path; a hang fails the test."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS)] + sys.path))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_json_that_holds_itself_or_nests_too_deep_is_a_value_error(platform: integration.Platform,
                                                                    vendor: Vendor) -> None:
    t = platform.tenant("acme-corp")
    looped: list = []
    looped.append(looped)
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    for payload in (looped, deep, {"a": looped}):
        with pytest.raises(ValueError, match="nested deeper"):
            t.publish("order.created", payload)
    connection_id = connect(t, vendor.url)
    with pytest.raises(ValueError, match="nested deeper"):
        t.execute(connection_id=connection_id, operation="sms.send", path_params={"account": "AC1"}, body=looped)
    # NaN and infinities have no JSON spelling: sent, they would be a body no vendor can parse.
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="not finite"):
            t.execute(connection_id=connection_id, operation="sms.send", path_params={"account": "AC1"},
                      body={"x": bad})
    assert len(vendor.requests) == 1  # the connection's health check only
    # 32 levels, as the host's parser takes, still go through.
    fine: dict = {}
    for _ in range(30):
        fine = {"k": fine}
    assert t.publish("order.created", fine)["event_id"]


def refused_without_showing(secret: str, call: Callable[[], object]) -> BaseException:
    """The TypeError or ValueError `call` raises, checked not to show `secret` in its str, repr or args."""
    with pytest.raises((TypeError, ValueError)) as caught:
        call()
    text = f"{caught.value!s} {caught.value!r} {caught.value.args!r}"
    assert secret not in text, text
    return caught.value


def test_a_secret_never_appears_in_an_argument_error(platform: integration.Platform) -> None:
    t = platform.tenant("acme-corp")
    canary = "TOPSECRET-canary-9f8e"
    calls = [
        lambda: t.create_credential(provider_id=None, secret=canary.encode()),  # type: ignore[arg-type]
        lambda: t.create_credential(provider_id="prov-\udcff", secret=canary.encode()),
        lambda: t.create_credential(provider_id="p", secret=canary.encode(), auth_mode=1),  # type: ignore[arg-type]
        lambda: t.rotate_credential(None, secret=canary.encode()),  # type: ignore[arg-type]
        lambda: t.register_inbound_endpoint(1, scheme="github", secret=canary.encode()),  # type: ignore[arg-type]
        lambda: t.rotate_inbound_secret(b"conn-1", secret=canary.encode()),  # type: ignore[arg-type]
        lambda: t.create_credential(provider_id="p", secret=canary + "\udcff"),
    ]
    for call in calls:
        refused_without_showing("TOPSECRET", call)
    with pytest.raises(TypeError, match="provider_id must be str"):
        t.create_credential(provider_id=b"prov-1", secret=canary)  # type: ignore[arg-type]
    # pybind11's own error for an argument it cannot convert repeats every argument beside it:
    # a vendor's headers and body, a connection's configuration, a payload, a backend URL.
    header = {"Authorization": "Bearer " + canary}
    body = ('{"token":"' + canary + '"}').encode()
    for call, names in [
        (lambda: platform.receive_webhook(None, headers=header, body=body), "connection_id must be str"),  # type: ignore[arg-type]
        (lambda: platform.receive_webhook("conn-1", headers=header, body=body, url=None), "url must be str"),  # type: ignore[arg-type]
        (lambda: platform.receive_webhook("conn-1", headers=header, body=body, content_type=1), "content_type must be str"),  # type: ignore[arg-type]
        (lambda: t.create_connection(provider_id=1, project_id="p1", display_name="A",  # type: ignore[arg-type]
                                     configuration={"region": canary}), "provider_id must be str"),
        (lambda: t.create_connection(provider_id="p", test="yes", project_id="p1", display_name="A",  # type: ignore[arg-type]
                                     configuration={"region": canary}), "test must be True or False"),
        (lambda: t.publish("order.created", {"order": {"token": canary}}, idempotency_key=7), "idempotency_key must be str"),  # type: ignore[arg-type]
        (lambda: t.publish(b"order.created", {"order": {"token": canary}}), "event_type must be str"),  # type: ignore[arg-type]
        (lambda: integration.open(store="postgresql://app:" + canary + "@db/x", max_attempts="3"), "max_attempts must be an int"),  # type: ignore[arg-type]
        (lambda: integration.open(store="postgresql://app:" + canary + "@db/x", durable=1), "durable must be True or False"),  # type: ignore[arg-type]
        (lambda: integration.open(secrets="local://u:" + canary + "@/x", egress_allow="127.0.0.1/32"), "egress_allow must be a list"),  # type: ignore[arg-type]
    ]:
        error = refused_without_showing("TOPSECRET", call)
        assert isinstance(error, TypeError) and names in str(error), repr(error)


def test_a_bool_is_not_taken_for_a_number(tmp_path: Path) -> None:
    for kwargs in [{"max_attempts": True}, {"deferred_retries": False}, {"attempt_timeout": True}]:
        with pytest.raises(TypeError, match="must be"):
            integration.open(data_dir=str(tmp_path / "d"), start_workers=False, **kwargs)  # type: ignore[arg-type]
    with integration.open(data_dir=str(tmp_path / "d"), start_workers=False, attempt_timeout=2, max_attempts=2) as p:
        assert not p.closed


def test_a_platform_or_tenant_comes_only_from_open(platform: integration.Platform) -> None:
    # Made by __new__, its C++ object was never constructed: any method then read garbage.
    for cls in (integration.Tenant, integration.Platform):
        with pytest.raises(TypeError, match="is not safe"):
            cls.__new__(cls)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="instances come from integration.open"):
            cls()  # type: ignore[call-arg]
    assert platform.tenant("acme-corp").tenant_id == "acme-corp"


def test_execute_refuses_a_sequence_where_a_mapping_goes(platform: integration.Platform) -> None:
    t = platform.tenant("acme-corp")
    for where, value in [("query", [("tag", "a")]), ("headers", "Accept: text/plain"), ("query", ("a", "b"))]:
        with pytest.raises(TypeError, match=f"{where} must be a mapping of str to str"):
            t.execute(connection_id="conn-1", operation="sms.send", **{where: value})  # type: ignore[arg-type]


def test_a_str_that_cannot_be_utf8_is_a_value_error_naming_where_it_was(platform: integration.Platform) -> None:
    # Python's own UnicodeEncodeError would carry the whole str (a bearer token, a password) in its
    # args and repr; a key was a RuntimeError ("Unable to cast") that named nothing.
    t = platform.tenant("acme-corp")
    bad = "TOPSECRET-canary-9f8e\udcff"
    execute = {"connection_id": "conn-1", "operation": "sms.send"}
    connection = {"provider_id": "p", "project_id": "p1", "display_name": "Acme", "credential_id": "c"}
    cases: list[tuple[str, Callable[[], object]]] = [
        ("headers", lambda: t.execute(**execute, headers={"Authorization": "Bearer " + bad})),
        ("headers", lambda: t.execute(**execute, headers={bad: "v"})),
        ("body", lambda: t.execute(**execute, body=bad)),
        ("body.token", lambda: t.execute(**execute, body={"token": bad})),
        ("payload.order.token", lambda: t.publish("order.created", {"order": {"token": bad}})),
        ("payload[0]", lambda: t.publish("order.created", [bad])),
        ("payload key", lambda: t.publish("order.created", {bad: 1})),
        ("configuration.password", lambda: t.create_connection(**connection, configuration={"password": bad})),
        ("configuration key", lambda: t.create_connection(**connection, configuration={bad: "x"})),
        ("header value", lambda: platform.receive_webhook("conn-1", headers={"Authorization": "Bearer " + bad},
                                                          body=b"")),
        ("header name", lambda: platform.receive_webhook("conn-1", headers=[(bad, "v")], body=b"")),
    ]
    for where, call in cases:
        error = refused_without_showing("TOPSECRET", call)
        assert isinstance(error, ValueError), repr(error)
        assert str(error) == f"{where} is a str that cannot be UTF-8 (it holds a lone surrogate)"


def test_a_tenant_and_actor_must_be_str(platform: integration.Platform) -> None:
    # bytes that are not UTF-8 were taken, written into every record the tenant made, and made
    # each of them unreadable.
    with pytest.raises(TypeError, match="actor must be str"):
        platform.tenant("acme-corp", b"mallory\xff")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tenant_id must be str"):
        platform.tenant(b"acme-corp")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot be UTF-8"):
        platform.tenant("acme-corp", "mallory\udcff")
    assert platform.tenant("acme-corp", "alice").list_providers()["items"] is not None


def test_only_the_snake_case_spelling_of_a_keyword_is_taken(platform: integration.Platform) -> None:
    t = platform.tenant("acme-corp")
    for kwargs in ({"displayName": "X"}, {"display_name_": "X"}, {"display_name": "A", "displayName": "B"}):
        with pytest.raises(TypeError, match="unexpected keyword argument"):
            t.register_provider(key="acme", base_url="https://api.acme.example", **kwargs)
    assert all(p["key"] != "acme" for p in t.list_providers(limit=500)["items"])


def test_only_the_snake_case_spelling_of_a_nested_key_is_taken(platform: integration.Platform) -> None:
    # Both spellings of one field were renamed to the same wire key and the later silently won.
    t = platform.tenant("acme-corp")
    probe = {"method": "GET", "path": "/health"}
    refused = "health_check: the key 'expectStatus' is not snake_case; spell it 'expect_status'"
    for check in ({**probe, "expect_status": 200, "expectStatus": 500},
                  {**probe, "expectStatus": 500, "expect_status": 200}, {**probe, "expectStatus": 500}):
        with pytest.raises(TypeError, match=refused):
            t.register_provider(key="acme", display_name="Acme", base_url="https://api.acme.example",
                                health_check=check)
    with pytest.raises(TypeError, match=r"operations\[0\]: the key 'idempotency_header_' is not snake_case"):
        t.register_client("prov-1", assembly_name="Acme.Sms", version="1.0.0",
                          operations=[{"operation": "sms.send", "method": "POST", "path": "/m",
                                       "idempotency_header": "A", "idempotency_header_": "B"}])
    assert all(p["key"] != "acme" for p in t.list_providers(limit=500)["items"])
    provider = t.register_provider(key="acme", display_name="Acme", base_url="https://api.acme.example",
                                   health_check={**probe, "expect_status": 204})
    assert provider["health_check"]["expect_status"] == 204


def test_times_and_durations_out_of_range_are_value_errors(tmp_path: Path, platform: integration.Platform) -> None:
    t = platform.tenant("acme-corp")
    for year in (1600, 2300, 9999):
        with pytest.raises(ValueError, match="between the years 1678 and 2261"):
            t.list_deliveries(since=datetime(year, 1, 1, tzinfo=timezone.utc))
    assert t.list_deliveries(since=datetime(2200, 1, 1, tzinfo=timezone.utc))["items"] == []
    for timeout in (0.0001, 0.0, -1.0, math.inf, math.nan, 1e300):
        with pytest.raises(ValueError, match="attempt_timeout"):
            integration.open(data_dir=str(tmp_path / "t"), attempt_timeout=timeout)
    for attempts in (0, -1, 101):
        with pytest.raises(ValueError, match="max_attempts"):
            integration.open(data_dir=str(tmp_path / "t"), max_attempts=attempts)
    with pytest.raises(ValueError, match="deferred_retries"):
        integration.open(data_dir=str(tmp_path / "t"), deferred_retries=-1)


def test_a_forked_child_is_refused_the_parents_platform_and_exits_without_hanging(tmp_path: Path) -> None:
    out = run_python(f"""
        import os, sys
        import integration
        p = integration.open(data_dir={str(tmp_path / "data")!r})
        t = p.tenant("acme-corp")
        t.list_providers()
        pid = os.fork()
        if pid == 0:
            try:
                t.list_providers()
                code = 3
            except integration.InvalidState as e:
                code = 0 if "fork" in str(e) else 4
            p.close()
            sys.exit(code)  # interpreter exit: the atexit close, then teardown
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        t.list_providers()  # the parent's platform is untouched
        p.close()
        print("parent ok")
    """)
    assert out.returncode == 0, out.stderr
    assert "child 0" in out.stdout and "parent ok" in out.stdout, out.stdout + out.stderr


def test_a_child_forked_while_the_parent_is_closing_closes_without_hanging(tmp_path: Path) -> None:
    # The parent's close() waits for a call in flight, holding its lock, when the process forks:
    # in the child no thread will ever let that lock go, so close() must not wait for it there.
    out = run_python(f"""
        import os, sys, threading, time
        import integration
        from conftest import Vendor, connect
        release = threading.Event()
        vendor = Vendor(before_answer=release.wait)
        p = integration.open(data_dir={str(tmp_path / "data")!r}, egress_allow=["127.0.0.0/8"])
        t = p.tenant("acme-corp")
        connection_id = connect(t, vendor.url)
        call = threading.Thread(target=lambda: t.execute(connection_id=connection_id, operation="sms.send",
                                                         path_params={{"account": "AC1"}}))
        call.start()
        while vendor.in_flight == 0:
            time.sleep(0.01)
        closing = threading.Thread(target=p.close)
        closing.start()
        time.sleep(0.5)  # close() now waits for the call, holding its lock
        pid = os.fork()
        if pid == 0:
            p.close()
            os._exit(0)
        deadline = time.time() + 20
        while time.time() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                print("child", os.waitstatus_to_exitcode(status))
                break
            time.sleep(0.05)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            print("child hung")
        release.set()
        call.join()
        closing.join()
        print("parent closed", p.closed)
    """)
    assert out.returncode == 0, out.stderr
    assert "child 0" in out.stdout and "parent closed True" in out.stdout, out.stdout + out.stderr


def test_an_unclosed_platform_is_closed_at_exit_while_its_log_callback_runs(tmp_path: Path) -> None:
    # A worker logs (its store's files removed under it) and is still inside the callable when the
    # interpreter exits: the platform must stop before Python is torn down, not crash under it.
    out = run_python(f"""
        import glob, os, threading, time
        import integration
        entered = threading.Event()
        def log(level, message):
            entered.set()
            end = time.time() + 1.5
            while time.time() < end:
                sum(range(1000))
        data = {str(tmp_path / "data")!r}
        p = integration.open(data_dir=data, log=log)
        for f in glob.glob(data + "/*.db*"):
            os.remove(f)
        print("logged", entered.wait(30), flush=True)
    """)
    assert "logged True" in out.stdout, out.stdout + out.stderr
    assert out.returncode == 0, out.stderr


def test_close_from_the_log_callback_is_refused_and_a_second_close_waits_for_the_first(tmp_path: Path) -> None:
    out = run_python(f"""
        import glob, os, threading
        import integration
        seen = []
        done = threading.Event()
        def log(level, message):
            if done.is_set():
                return
            try:
                p.close()
                seen.append("closed")
            except integration.InvalidState as e:
                seen.append("refused" if "log callback" in str(e) else str(e))
            done.set()
        data = {str(tmp_path / "data")!r}
        p = integration.open(data_dir=data, log=log)
        for f in glob.glob(data + "/*.db*"):
            os.remove(f)
        done.wait(30)
        print(seen, p.closed, flush=True)
        p.close()
        print("closed", p.closed, flush=True)
    """)
    assert "['refused'] False" in out.stdout, out.stdout + out.stderr
    assert "closed True" in out.stdout and out.returncode == 0, out.stdout + out.stderr


def test_an_error_class_that_cannot_be_made_does_not_abort_the_process(tmp_path: Path) -> None:
    # execute() is a C entry point that may not throw: the error class failing to build its
    # object took the process down with std::terminate.
    done = run_python(f"""
        import integration
        integration.NotFound.__init__ = lambda *args: 1 / 0
        with integration.open(data_dir={str(tmp_path / "d")!r}, start_workers=False) as p:
            try:
                p.tenant("acme-corp").execute(connection_id="conn-01JD3Q8V6X4T2M9R5B7N1K0FZC", operation="sms.send")
            except ZeroDivisionError:
                print("raised")
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "raised", done.stdout + done.stderr
