"""A credential's secret goes in and never comes out: not in a result, a repr, an exception or a log."""

import uuid
from pathlib import Path

import pytest

import integration
from conftest import Logs, Vendor, connect


def test_no_canary_secret_in_results_reprs_errors_or_logs(tmp_path: Path, vendor: Vendor,
                                                         capfd: pytest.CaptureFixture[str]) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    logs = Logs()
    seen: list[str] = []
    with integration.open(data_dir=str(tmp_path / "data"), egress_allow=["127.0.0.0/8"], log=logs) as p:
        t = p.tenant("acme-corp", "alice")
        seen += [repr(p), repr(t)]
        connection_id = connect(t, vendor.url, secret=canary)
        credential_id = t.get_connection(connection_id)["credential_id"]
        seen += [repr(t.get_credential(credential_id)), repr(t.list_credentials())]

        # The vendor echoes the request, key included: the run's answer comes back redacted.
        out = t.execute(connection_id=connection_id, operation="sms.send", path_params={"account": "AC1"})
        assert vendor.requests[-1]["headers"]["X-Api-Key"] == canary  # it was sent...
        assert b"[REDACTED]" in out["response"]["body"]  # ...and is not in what came back
        seen += [repr(out), repr(t.get_run(out["run_id"])), repr(t.list_runs())]

        for bad in (lambda: t.rotate_credential("cred-missing", secret=canary),
                    lambda: t.create_credential(provider_id="prov-missing", secret=canary),
                    lambda: t.create_credential(provider_id="prov-missing", secret=canary, auth_mode="Nope")):
            with pytest.raises(integration.Error) as caught:
                bad()
            seen += [str(caught.value), repr(caught.value), caught.value.detail]

        seen += [repr(t.revoke_credential(credential_id, reason="rotate out the canary"))]
    captured = capfd.readouterr()
    seen += logs.lines + [captured.out, captured.err]
    for text in seen:
        assert canary not in text
    # The secret store holds it encrypted; nothing else under the data directory has it in clear.
    for f in (tmp_path / "data").rglob("*"):
        if f.is_file():
            assert canary.encode() not in f.read_bytes(), f
