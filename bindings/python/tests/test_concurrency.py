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

