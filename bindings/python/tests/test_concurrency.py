"""Runs release the GIL: 16 Python threads execute at once against a vendor that answers only
when all 16 requests are in flight together (a barrier, with a bounded wait)."""

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import integration
from conftest import Vendor, connect

THREADS = 16


def test_sixteen_threads_execute_runs_concurrently(tmp_path: Path) -> None:
    barrier = threading.Barrier(THREADS, timeout=30)
    vendor = Vendor(before_answer=barrier.wait)
    try:
        # Were the GIL held during a run, the vendor's threads could not even accept: each run
        # would time out alone and the barrier would break.
        with integration.open(data_dir=str(tmp_path / "data"), egress_allow=["127.0.0.0/8"], max_attempts=1,
                              deferred_retries=0, attempt_timeout=60) as p:
            t = p.tenant("acme-corp")
            connection_id = connect(t, vendor.url)

            def run(i: int) -> dict:
                return t.execute(connection_id=connection_id, operation="sms.send",
                                 path_params={"account": f"AC{i}"})

            with ThreadPoolExecutor(max_workers=THREADS) as pool:
                outcomes = list(pool.map(run, range(THREADS)))
            assert [o["status"] for o in outcomes] == ["Completed"] * THREADS
            assert not barrier.broken
            assert vendor.max_in_flight == THREADS
            assert len(t.list_runs(limit=100)["items"]) == THREADS
    finally:
        vendor.close()



def test_close_waits_for_a_call_in_flight_and_returns_with_the_platform_stopped(tmp_path: Path) -> None:
    # A call in flight holds the platform: closed under it, the platform stopped when that call
    # returned, on its thread and with the GIL held (a worker waiting to log could then never get
    # it). close() now waits for the call, so the platform stops inside close(), without the GIL.
    release = threading.Event()
    vendor = Vendor(before_answer=lambda: release.wait(30))
    try:
        p = integration.open(data_dir=str(tmp_path / "data"), egress_allow=["127.0.0.0/8"], max_attempts=1,
                             deferred_retries=0, attempt_timeout=60)
        t = p.tenant("acme-corp")
        connection_id = connect(t, vendor.url)
        outcome: dict = {}
        call = threading.Thread(target=lambda: outcome.update(run=t.execute(
            connection_id=connection_id, operation="sms.send", path_params={"account": "AC1"})))
        call.start()
        for _ in range(3000):
            if vendor.in_flight:
                break
            threading.Event().wait(0.01)
        assert vendor.in_flight == 1
        closer = threading.Thread(target=p.close)
        closer.start()
        closer.join(0.5)
        assert closer.is_alive(), "close() returned while a call was still in flight"
        assert p.closed
        # A second close() returns when the platform has stopped, not when the first began.
        second = threading.Thread(target=p.close)
        second.start()
        second.join(0.5)
        assert second.is_alive(), "a second close() returned while the platform was still running"
        release.set()
        for thread in (call, closer, second):
            thread.join(30)
            assert not thread.is_alive()
        assert outcome["run"]["status"] == "Completed"
    finally:
        release.set()
        vendor.close()
