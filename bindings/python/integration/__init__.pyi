"""Type stubs of the integration module (checked with mypy --strict by the tests)."""

from datetime import datetime
from types import TracebackType
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping, Optional, Protocol, Sequence, TypedDict, Union

__version__: str

#: A JSON value as Python has it.
Json = Any
#: One aggregate (provider, API client, credential, connection, failure, subscription, delivery;
#: a run is a :class:`Run`): snake_case keys, ``datetime`` for times, ``metadata`` with its audit
#: fields.
Record = dict[str, Any]
Secret = Union[bytes, bytearray, str]
#: A raw request body, exactly as received.
Body = Union[bytes, bytearray, memoryview]

class SecretBytes(bytes):
    """A secret the library generated (a subscription's signing secret), handed over once:
    use it as any ``bytes``; ``repr()`` and ``str()`` never show it."""

class _HeaderItems(Protocol):
    def items(self) -> Iterable[tuple[str, str]]: ...

#: Request headers as received: a mapping (``dict``, ``http.client.HTTPMessage``: repeated names
#: are kept) or a sequence of ``(name, value)`` pairs.
Headers = Union[_HeaderItems, Iterable[tuple[str, str]]]

class Page(TypedDict):
    items: list[Record]
    next_cursor: Optional[str]

class Run(Mapping[str, Any]):
    """A governed run, as a read-only mapping: the run's snake_case fields (``run_id``,
    ``status``, ``started_at`` as a ``datetime``, ``run_attempts``, ...; an unset optional field is
    no key), ``metadata``, and from :meth:`Tenant.execute` also ``response`` (a :class:`Response`
    or None), ``failure_id`` and ``replayed``. It owns its data (readable after the platform is
    closed) and builds each value when it is read; ``dict(run)`` is a plain ``dict`` of it, and a
    run equals a dict with the same content."""

    def __getitem__(self, key: str) -> Any: ...
    def __iter__(self) -> Iterator[str]: ...
    def __len__(self) -> int: ...
    def __eq__(self, other: object) -> bool: ...

class RunPage(TypedDict):
    items: list[Run]
    next_cursor: Optional[str]

class Response(Mapping[str, Any]):
    """The vendor's answer to an executed run, as a read-only mapping: ``status`` (``int``),
    ``headers`` (a ``dict[str, str]``) and ``body`` (``bytes``). It reads from the run it came from
    and builds each value when it is read; ``dict(response)`` is a plain ``dict`` of it, and a
    response equals a dict with the same content."""

    def __getitem__(self, key: str) -> Any: ...
    def __iter__(self) -> Iterator[str]: ...
    def __len__(self) -> int: ...
    def __eq__(self, other: object) -> bool: ...

class Publication(TypedDict):
    event_id: str
    delivery_ids: list[str]
    repeated: bool

class InboundEndpoint(TypedDict):
    connection_id: str
    scheme: str

class InboundOutcome(TypedDict):
    """What ``Platform.receive_webhook`` did: ``reason`` (e.g. ``'signature-mismatch'``) and
    ``detail`` are set when it was rejected, the identity when accepted or a duplicate;
    ``challenge`` is what to echo for a handshake (Slack's ``url_verification``), stored nowhere."""

    outcome: Literal["accepted", "duplicate", "rejected", "challenge"]
    delivery_id: Optional[str]
    tenant_id: Optional[str]
    provider_delivery_id: Optional[str]
    event_type: Optional[str]
    signed_at: Optional[datetime]
    challenge: Optional[str]
    reason: Optional[str]
    detail: Optional[str]

class Error(Exception):
    """An error of the library; ``code`` names it (e.g. ``'not_found'``)."""

    code: str
    detail: str

class InvalidArgument(Error, ValueError): ...
class InvalidState(Error): ...
class InvariantViolation(Error): ...
class NotFound(Error, LookupError): ...
class AlreadyExists(Error): ...
class Conflict(Error): ...
class Forbidden(Error, PermissionError): ...
class StorageFailure(Error): ...
class StorageBusy(Error): ...
class SchemaTooNew(Error): ...
class DatabaseMissing(Error): ...
class Unavailable(Error): ...
class SecretStoreFailure(Error): ...
class IntegrityFailure(Error): ...
class EgressDenied(Error): ...
class Timeout(Error, TimeoutError): ...
class Cancelled(Error): ...
class VerificationFailed(Error): ...
class InProgress(Error): ...
class ScopeNotGranted(Error): ...
class ConnectionLost(Error, ConnectionError): ...
class IdempotencyKeyReused(Error): ...

def open(
    *,
    data_dir: str = "./data",
    store: str = "",
    secrets: str = "",
    blobs: str = "",
    source: str = "integration",
    egress_allow: Sequence[str] = (),
    start_workers: bool = True,
    deliver_webhooks: bool = True,
    max_attempts: Optional[int] = None,
    attempt_timeout: Optional[float] = None,
    deferred_retries: Optional[int] = None,
    durable: bool = True,
    write_behind: bool = False,
    log: Optional[Callable[[str, str], None]] = None,
    managed_identity_tenants: Sequence[str] = (),
    managed_identity_allow: Sequence[str] = (),
) -> Platform: ...

class Platform:
    @property
    def closed(self) -> bool: ...
    @property
    def data_dir(self) -> str: ...
    def tenant(self, tenant_id: str, actor: str = "system", *, admin: bool = False) -> Tenant: ...
    def receive_webhook(
        self,
        connection_id: str,
        *,
        headers: Headers,
        body: Body,
        url: str = "",
        content_type: Optional[str] = None,
    ) -> InboundOutcome:
        """Receives one vendor request (unauthenticated: the connection names the tenant)."""
    def close(self) -> None: ...
    def __enter__(self) -> Platform: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

class Tenant:
    @property
    def tenant_id(self) -> str: ...
    @property
    def actor(self) -> str: ...

    # providers and API clients
    def register_provider(
        self,
        *,
        key: str,
        display_name: str,
        base_url: str,
        category: Optional[str] = None,
        auth_model: Optional[str] = None,
        capabilities: Sequence[str] = (),
        environments: Sequence[Mapping[str, str]] = (),
        rate_limit_profile: Optional[Mapping[str, Json]] = None,
        health_check: Optional[Mapping[str, Json]] = None,
        scope: Optional[str] = None,
    ) -> Record: ...
    def get_provider(self, provider_id: str) -> Record: ...
    def list_providers(self, *, limit: int = 50, cursor: Optional[str] = None) -> Page: ...
    def activate_provider(self, provider_id: str) -> Record:
        """Activates the provider with its Registered clients, in one commit (refused, changing
        nothing, when it is Deprecated or would have no Active client); on an Active provider,
        activates the clients registered since."""
        ...
    def deprecate_provider(self, provider_id: str, *, reason: str = "deprecated") -> Record: ...
    def register_client(
        self,
        provider_id: str,
        *,
        assembly_name: str,
        version: str,
        capabilities: Sequence[str] = (),
        auth_mode: Optional[str] = None,
        rate_limit_profile: Optional[Mapping[str, Json]] = None,
        operations: Sequence[Mapping[str, str]] = (),
    ) -> Record: ...
    def list_clients(self, provider_id: str, *, limit: int = 50, cursor: Optional[str] = None) -> Page: ...
    def activate_client(self, api_client_id: str) -> Record: ...
    def deprecate_client(self, api_client_id: str) -> Record: ...

    # credentials: the secret goes in and never comes out
    def create_credential(
        self,
        *,
        provider_id: str,
        secret: Optional[Secret] = None,
        auth_mode: str = "ApiKey",
        connection_id: Optional[str] = None,
        api_key: Optional[Mapping[str, str]] = None,
        oauth2: Optional[Mapping[str, Json]] = None,
        managed_identity: Optional[Mapping[str, str]] = None,
        rotation_policy: Optional[Mapping[str, int]] = None,
        expires_at: Optional[datetime] = None,
        scheme: Optional[str] = None,
    ) -> Record: ...
    def rotate_credential(
        self, credential_id: str, *, secret: Secret, expires_at: Optional[datetime] = None
    ) -> Record: ...
    def revoke_credential(self, credential_id: str, *, reason: str = "revoked") -> Record: ...
    def get_credential(self, credential_id: str) -> Record: ...
    def list_credentials(
        self,
        *,
        provider_id: Optional[str] = None,
        connection_id: Optional[str] = None,
        limit: int = 50,
        cursor: Optional[str] = None,
    ) -> Page: ...

    # connections
    def create_connection(
        self,
        *,
        provider_id: str,
        test: bool = True,
        project_id: str,
        display_name: str,
        credential_id: str,
        configuration: Optional[Mapping[str, Json]] = None,
        endpoints: Sequence[Mapping[str, str]] = (),
        scopes: Sequence[str] = (),
        rate_limit_budget: Optional[Mapping[str, Json]] = None,
        retry_policy: Optional[Mapping[str, Json]] = None,
        environment: Optional[str] = None,
    ) -> Record: ...
    def get_connection(self, connection_id: str) -> Record: ...
    def list_connections(
        self,
        *,
        project_id: Optional[str] = None,
        provider_id: Optional[str] = None,
        status: Optional[str] = None,
        limit: int = 50,
        cursor: Optional[str] = None,
    ) -> Page: ...
    def test_connection(self, connection_id: str) -> Record: ...
    def retire_connection(self, connection_id: str, *, reason: str = "retired") -> Record: ...

    # governed runs
    def execute(
        self,
        *,
        connection_id: str,
        operation: str,
        path_params: Optional[Mapping[str, str]] = None,
        query: Optional[Mapping[str, str]] = None,
        headers: Optional[Mapping[str, str]] = None,
        body: Union[None, bytes, str, Mapping[str, Json], Sequence[Json]] = None,
        idempotency_key: Optional[str] = None,
        allow_degraded: bool = False,
    ) -> Run:
        """The run, with ``response`` (a :class:`Response` or None), ``failure_id`` and ``replayed``."""
    def get_run(self, run_id: str) -> Run: ...
    def list_runs(
        self,
        *,
        connection_id: Optional[str] = None,
        status: Optional[str] = None,
        limit: int = 50,
        cursor: Optional[str] = None,
    ) -> RunPage: ...

    # failures
    def get_failure(self, failure_id: str) -> Record: ...
    def list_failures(
        self,
        *,
        run_id: Optional[str] = None,
        delivery_id: Optional[str] = None,
        unresolved_only: bool = False,
        limit: int = 50,
        cursor: Optional[str] = None,
    ) -> Page: ...
    def escalate_failure(self, failure_id: str, *, reason: str, ticket_ref: Optional[str] = None) -> Record: ...
    def resolve_failure(self, failure_id: str, *, outcome: str = "DeadLettered") -> Record:
        """Resolves a failure whose source ended ('Succeeded' or 'DeadLettered'); a dead outbox event's is dropped."""
    def replay_failure(self, failure_id: str) -> Record:
        """Publishes again the dead outbox event an OutboxEvent failure tells of; resolves the failure."""

    # outbound webhooks
    def subscribe(
        self,
        *,
        project_id: str,
        event_type: str,
        endpoint_url: str,
        signing_secret_ref: Optional[str] = None,
        filter: Optional[Json] = None,
        attempt_policy: Optional[Mapping[str, Json]] = None,
        ordered: bool = False,
        max_per_second: Optional[float] = None,
    ) -> Record:
        """The subscription, with its generated ``signing_secret`` (a :class:`SecretBytes`, shown this once)."""
    def get_subscription(self, subscription_id: str) -> Record: ...
    def list_subscriptions(self, *, limit: int = 50, cursor: Optional[str] = None) -> Page: ...
    def deactivate_subscription(self, subscription_id: str, *, reason: str = "deactivated by the caller") -> Record: ...
    def reactivate_subscription(self, subscription_id: str) -> Record: ...
    def rotate_subscription_secret(self, subscription_id: str) -> Record:
        """The subscription, with its new ``signing_secret`` (a :class:`SecretBytes`, shown this once).
        Each replaced secret keeps signing for its own overlap (24 h); past 8 of them, :class:`Conflict`."""
    def recover_subscription(self, subscription_id: str, *, since: datetime) -> list[str]: ...
    def publish(self, event_type: str, payload: Json, *, idempotency_key: Optional[str] = None) -> Publication: ...
    def get_delivery(self, delivery_id: str) -> Record: ...
    def list_deliveries(
        self,
        *,
        direction: Optional[str] = None,
        subscription_id: Optional[str] = None,
        connection_id: Optional[str] = None,
        status: Optional[str] = None,
        event_id: Optional[str] = None,
        since: Optional[datetime] = None,
        limit: int = 50,
        cursor: Optional[str] = None,
    ) -> Page: ...
    def replay_delivery(self, delivery_id: str) -> Record: ...

    # inbound webhooks (Platform.receive_webhook receives them)
    def register_inbound_endpoint(self, connection_id: str, *, scheme: str, secret: Secret) -> InboundEndpoint: ...
    def rotate_inbound_secret(self, connection_id: str, *, secret: Secret) -> InboundEndpoint: ...
    def get_inbound_payload(self, delivery_id: str) -> bytes: ...

def _execute_from_cpp(tenant: Tenant, connection_id: str, operation: str, iterations: int) -> int: ...
def _get_run_from_cpp(tenant: Tenant, run_id: str, iterations: int) -> int: ...
def _run_as_dict(tenant: Tenant, run_id: str) -> Record: ...
