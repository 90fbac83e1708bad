"""Library errors arrive as one exception hierarchy carrying the error code and its message."""

import pytest

import integration
from conftest import Vendor, connect


def test_not_found_carries_code_and_message(platform: integration.Platform) -> None:
    t = platform.tenant("acme-corp")
    with pytest.raises(integration.NotFound) as caught:
        t.get_run("run-missing")
    e = caught.value
    assert isinstance(e, integration.Error) and isinstance(e, LookupError)
    assert e.code == "not_found" and integration.NotFound.code == "not_found"
    assert "run-missing" in e.detail
    assert str(e).endswith(e.detail) and str(e) != e.detail  # the category message, then the detail


def test_bad_input_is_invalid_argument(platform: integration.Platform) -> None:
    t = platform.tenant("acme-corp")
    with pytest.raises(integration.InvalidArgument) as caught:
        t.register_provider(key="", display_name="Acme", base_url="https://api.acme.example")
    assert caught.value.code == "invalid_argument" and isinstance(caught.value, ValueError)
    with pytest.raises(integration.InvalidArgument):
        t.list_runs(status="Sleeping")
    with pytest.raises(integration.InvalidArgument):
        platform.tenant("no spaces allowed")


def test_a_second_registration_of_a_key_is_already_exists(platform: integration.Platform) -> None:
    t = platform.tenant("acme-corp")
    t.register_provider(key="acme", display_name="Acme", base_url="https://api.acme.example")
    with pytest.raises(integration.AlreadyExists) as caught:
        t.register_provider(key="acme", display_name="Acme again", base_url="https://api.acme.example")
    assert caught.value.code == "already_exists" and "acme" in str(caught.value)


def test_egress_is_denied_for_a_private_range(platform: integration.Platform) -> None:
    t = platform.tenant("acme-corp")
    with pytest.raises(integration.EgressDenied) as caught:
        t.register_provider(key="intranet", display_name="Intranet", base_url="http://10.0.0.1")
    assert caught.value.code == "egress_denied"


def test_a_misspelt_key_in_a_nested_dict_is_refused_by_name(platform: integration.Platform) -> None:
    t = platform.tenant("acme-corp")
    with pytest.raises(integration.InvalidArgument, match="healthCheck.expectedStatus is not a field here"):
        t.register_provider(key="typo", display_name="Typo", base_url="https://api.typo.example",
                            health_check={"method": "GET", "path": "/", "expected_status": 200})
    assert all(p["key"] != "typo" for p in t.list_providers()["items"])


def test_bytes_that_are_not_utf8_are_refused_and_every_record_stays_readable(platform: integration.Platform,
                                                                            vendor: Vendor) -> None:
    t = platform.tenant("acme-corp")
    connection_id = connect(t, vendor.url)
    with pytest.raises(integration.InvalidArgument, match="reason must be UTF-8 text"):
        t.retire_connection(connection_id, reason=b"caf\xe9")
    assert t.get_connection(connection_id)["status"] == "Active"
    assert t.list_connections()["items"]
    # An id given as bytes that are not UTF-8: the library's error, not a UnicodeDecodeError.
    with pytest.raises(integration.NotFound):
        t.get_provider(b"prov-\xff")


def test_a_vendors_header_is_read_as_utf8_or_else_as_latin1(platform: integration.Platform, vendor: Vendor) -> None:
    t = platform.tenant("acme-corp")
    connection_id = connect(t, vendor.url)
    vendor.extra_headers = {"X-Note": "caf\xe9", "X-Name": "h\xc3\xa9llo"}  # the byte 0xE9; UTF-8's two for é
    run = t.execute(connection_id=connection_id, operation="sms.send", path_params={"account": "AC1"})
    assert run["status"] == "Completed"
    headers = {k.lower(): v for k, v in dict(run["response"])["headers"].items()}
    assert headers["x-note"] == "caf\xe9"  # not UTF-8: read as Latin-1
    assert headers["x-name"] == "h\xe9llo"  # UTF-8: read as UTF-8
    assert "Run(" in repr(run)


def test_python_mistakes_are_python_errors(platform: integration.Platform, vendor: Vendor) -> None:
    t = platform.tenant("acme-corp")
    with pytest.raises(TypeError, match="unexpected keyword argument 'displayname'"):
        t.register_provider(key="acme", displayname="Acme", base_url="https://api.acme.example")
    connection_id = connect(t, vendor.url)
    with pytest.raises(TypeError, match="body.when must be JSON"):
        t.execute(connection_id=connection_id, operation="sms.send", path_params={"account": "AC1"},
                  body={"when": object()})
    with pytest.raises(TypeError, match="secret must be bytes or str"):
        t.create_credential(provider_id="x", secret=42)  # type: ignore[arg-type]
    # execute parses its own arguments (no pybind11 dispatch): the same mistakes are TypeErrors.
    with pytest.raises(TypeError, match="unexpected keyword argument 'operaton'"):
        t.execute(connection_id=connection_id, operaton="sms.send")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="missing required keyword argument 'operation'"):
        t.execute(connection_id=connection_id)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="no positional arguments"):
        t.execute(connection_id, "sms.send")  # type: ignore[misc]
    with pytest.raises(TypeError, match="path_params must be str"):
        t.execute(connection_id=connection_id, operation="sms.send", path_params={"account": 1})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="operation must be str"):
        t.execute(connection_id=connection_id, operation=None)  # type: ignore[arg-type]
    kw = {"connection_id": connection_id, "operation": "sms.send", "path_params": {"account": "AC1"}}
    assert t.execute(**{"".join(k): v for k, v in kw.items()})["status"] == "Completed"  # names made at run time


def test_a_closed_platform_refuses_calls(tmp_path: str) -> None:
    p = integration.open(data_dir=f"{tmp_path}/data")
    t = p.tenant("acme-corp")
    p.close()
    assert p.closed and "closed" in repr(p)
    with pytest.raises(integration.InvalidState, match="closed"):
        t.list_runs()
    p.close()  # twice is fine


def test_an_unopenable_store_names_the_problem(tmp_path: str) -> None:
    with pytest.raises(integration.Error) as caught:
        integration.open(data_dir=f"{tmp_path}/data", store="nosuch:///x")
    assert "nosuch" in str(caught.value)


def test_only_tenants_the_operator_lists_may_use_the_managed_identity(tmp_path: str) -> None:
    identity = {"endpoint_url": "http://127.0.0.1:9/metadata/identity/oauth2/token", "resource": "https://vault.example/"}
    with integration.open(data_dir=f"{tmp_path}/data", egress_allow=["127.0.0.0/8"],
                          managed_identity_tenants=["ops"]) as p:
        for name in ("ops", "acme-corp"):
            t = p.tenant(name)
            provider = t.register_provider(key="vault", display_name="Vault", base_url="http://127.0.0.1:9")
            if name == "ops":
                created = t.create_credential(provider_id=provider["provider_id"], auth_mode="ManagedIdentity",
                                              managed_identity=identity)
                assert created["auth_mode"] == "ManagedIdentity"
            else:
                with pytest.raises(integration.Forbidden, match="managed_identity_tenants"):
                    t.create_credential(provider_id=provider["provider_id"], auth_mode="ManagedIdentity",
                                        managed_identity=identity)


def test_the_managed_identity_allow_list_takes_cidrs_only(tmp_path: str) -> None:
    with pytest.raises(integration.InvalidArgument):
        integration.open(data_dir=f"{tmp_path}/data", managed_identity_allow=["169.254.169.254/33"])
    with integration.open(data_dir=f"{tmp_path}/data", managed_identity_allow=["169.254.169.254/32"],
                          managed_identity_tenants=["ops"]) as p:
        assert not p.closed
