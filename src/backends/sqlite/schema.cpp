#include "schema.hpp"

#include <integration/backends/sqlite/sqlite_store.hpp>

#include <array>

namespace integration::storage::sqlite {
namespace {

// Column names are the snake_case of the JSON field names; the repositories build their SQL from
// the same field lists, so a mismatch fails at the first prepare.
#define INTEGRATION_META                                                                                   \
    "tenant_id TEXT NOT NULL, created_at INTEGER NOT NULL, created_by TEXT NOT NULL, "                     \
    "updated_at INTEGER NOT NULL, updated_by TEXT NOT NULL, row_version INTEGER NOT NULL"
#define INTEGRATION_CHILD(parent, key) \
    "owner_id TEXT NOT NULL REFERENCES " parent "(" key ") ON DELETE CASCADE, position INTEGER NOT NULL, "

constexpr std::array<char const*, 32> migrations{
    // 1: the eight aggregates, their child entities and the outbox.
    R"sql(
CREATE TABLE providers(provider_id TEXT PRIMARY KEY, )sql" INTEGRATION_META R"sql(,
  key TEXT NOT NULL, display_name TEXT NOT NULL, category TEXT NOT NULL, auth_model TEXT NOT NULL,
  base_url TEXT NOT NULL, rate_limit_profile TEXT, health_check TEXT, scope TEXT NOT NULL, status TEXT NOT NULL);
CREATE UNIQUE INDEX providers_by_key ON providers(tenant_id, key);
CREATE TABLE providers_capabilities()sql" INTEGRATION_CHILD("providers", "provider_id") R"sql(
  value TEXT NOT NULL, PRIMARY KEY(owner_id, position));
CREATE TABLE providers_environments()sql" INTEGRATION_CHILD("providers", "provider_id") R"sql(
  name TEXT NOT NULL, base_url TEXT NOT NULL, PRIMARY KEY(owner_id, position));

CREATE TABLE api_clients(api_client_id TEXT PRIMARY KEY, )sql" INTEGRATION_META R"sql(,
  provider_id TEXT NOT NULL REFERENCES providers(provider_id), assembly_name TEXT NOT NULL, version TEXT NOT NULL,
  auth_mode TEXT NOT NULL, rate_limit_profile TEXT, status TEXT NOT NULL);
CREATE INDEX api_clients_by_provider ON api_clients(provider_id, status);
CREATE TABLE api_clients_capabilities()sql" INTEGRATION_CHILD("api_clients", "api_client_id") R"sql(
  value TEXT NOT NULL, PRIMARY KEY(owner_id, position));
CREATE TABLE api_clients_operations()sql" INTEGRATION_CHILD("api_clients", "api_client_id") R"sql(
  operation TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL, PRIMARY KEY(owner_id, position));
CREATE TABLE api_clients_versions()sql" INTEGRATION_CHILD("api_clients", "api_client_id") R"sql(
  version TEXT NOT NULL, registered_at INTEGER NOT NULL, PRIMARY KEY(owner_id, position));
-- assemblyName + version is unique across every client's history (scoped by migration 4).
CREATE TABLE assembly_versions(assembly_name TEXT NOT NULL, version TEXT NOT NULL,
  api_client_id TEXT NOT NULL REFERENCES api_clients(api_client_id) ON DELETE CASCADE,
  PRIMARY KEY(assembly_name, version));

CREATE TABLE connections(connection_id TEXT PRIMARY KEY, )sql" INTEGRATION_META R"sql(,
  provider_id TEXT NOT NULL REFERENCES providers(provider_id), auth_mode TEXT NOT NULL, project_id TEXT NOT NULL,
  display_name TEXT NOT NULL, credential_id TEXT, configuration TEXT NOT NULL, rate_limit_budget TEXT,
  retry_policy TEXT, status TEXT NOT NULL, health TEXT NOT NULL, last_checked_at INTEGER, established_at INTEGER);
CREATE INDEX connections_by_project ON connections(tenant_id, project_id, provider_id, connection_id);
CREATE INDEX connections_by_provider ON connections(tenant_id, provider_id, connection_id);
CREATE INDEX connections_by_status ON connections(tenant_id, status, connection_id);
CREATE TABLE connections_endpoints()sql" INTEGRATION_CHILD("connections", "connection_id") R"sql(
  operation_class TEXT NOT NULL, base_url TEXT NOT NULL, region TEXT, PRIMARY KEY(owner_id, position));
CREATE TABLE connections_scopes()sql" INTEGRATION_CHILD("connections", "connection_id") R"sql(
  value TEXT NOT NULL, PRIMARY KEY(owner_id, position));

CREATE TABLE credentials(credential_id TEXT PRIMARY KEY, )sql" INTEGRATION_META R"sql(,
  provider_id TEXT NOT NULL, connection_id TEXT, auth_mode TEXT NOT NULL, key_vault_ref TEXT NOT NULL,
  fingerprint TEXT NOT NULL, auth_parameters TEXT NOT NULL, rotation_policy TEXT, expires_at INTEGER,
  current_version INTEGER NOT NULL, status TEXT NOT NULL, last_rotated_at INTEGER);
CREATE INDEX credentials_by_provider ON credentials(tenant_id, provider_id, credential_id);
CREATE INDEX credentials_by_connection ON credentials(tenant_id, connection_id, credential_id);
CREATE INDEX credentials_by_expiry ON credentials(tenant_id, expires_at) WHERE status <> 'Revoked';
CREATE TABLE credentials_versions()sql" INTEGRATION_CHILD("credentials", "credential_id") R"sql(
  version INTEGER NOT NULL, key_vault_ref TEXT NOT NULL, fingerprint TEXT NOT NULL, state TEXT NOT NULL,
  created_at INTEGER NOT NULL, activated_at INTEGER, deactivated_at INTEGER, PRIMARY KEY(owner_id, position));

CREATE TABLE runs(run_id TEXT PRIMARY KEY, )sql" INTEGRATION_META R"sql(,
  project_id TEXT NOT NULL, connection_id TEXT NOT NULL, provider_id TEXT NOT NULL, operation TEXT NOT NULL,
  idempotency_key TEXT, request_ref TEXT, response_ref TEXT, status TEXT NOT NULL, attempts INTEGER NOT NULL,
  external_ref TEXT, started_at INTEGER, completed_at INTEGER, latency_ms INTEGER);
CREATE INDEX runs_by_connection ON runs(tenant_id, connection_id, status, run_id);
CREATE INDEX runs_by_status ON runs(tenant_id, status, run_id);
CREATE UNIQUE INDEX runs_by_idempotency_key ON runs(tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE TABLE runs_run_attempts()sql" INTEGRATION_CHILD("runs", "run_id") R"sql(
  attempt INTEGER NOT NULL, status TEXT NOT NULL, error_class TEXT, http_status INTEGER, latency_ms INTEGER NOT NULL,
  started_at INTEGER NOT NULL, PRIMARY KEY(owner_id, position));

CREATE TABLE failures(failure_id TEXT PRIMARY KEY, )sql" INTEGRATION_META R"sql(,
  source TEXT NOT NULL, run_id TEXT, delivery_id TEXT, connection_id TEXT, credential_id TEXT,
  provider_id TEXT NOT NULL, category TEXT NOT NULL, error_code TEXT NOT NULL, message TEXT NOT NULL,
  attempt INTEGER NOT NULL, next_action TEXT NOT NULL, next_attempt_at INTEGER, resolved_at INTEGER);
CREATE INDEX failures_due ON failures(tenant_id, next_attempt_at) WHERE resolved_at IS NULL AND next_action = 'Retry';
CREATE INDEX failures_by_run ON failures(tenant_id, run_id, failure_id);
CREATE INDEX failures_by_delivery ON failures(tenant_id, delivery_id, failure_id);
CREATE TABLE failures_failure_attempts()sql" INTEGRATION_CHILD("failures", "failure_id") R"sql(
  attempt INTEGER NOT NULL, category TEXT NOT NULL, error_code TEXT NOT NULL, message TEXT NOT NULL,
  occurred_at INTEGER NOT NULL, PRIMARY KEY(owner_id, position));
CREATE TABLE failures_escalations()sql" INTEGRATION_CHILD("failures", "failure_id") R"sql(
  escalated_by TEXT NOT NULL, reason TEXT NOT NULL, escalated_at INTEGER NOT NULL, ticket_ref TEXT,
  PRIMARY KEY(owner_id, position));

CREATE TABLE subscriptions(subscription_id TEXT PRIMARY KEY, )sql" INTEGRATION_META R"sql(,
  project_id TEXT NOT NULL, event_type TEXT NOT NULL, endpoint_url TEXT NOT NULL, signing_secret_ref TEXT NOT NULL,
  filter TEXT, attempt_policy TEXT, active INTEGER NOT NULL);
CREATE INDEX subscriptions_active ON subscriptions(tenant_id, active, event_type);

CREATE TABLE deliveries(delivery_id TEXT PRIMARY KEY, )sql" INTEGRATION_META R"sql(,
  direction TEXT NOT NULL, subscription_id TEXT, provider_id TEXT, connection_id TEXT, provider_delivery_id TEXT,
  event_type TEXT NOT NULL, event_id TEXT, payload_ref TEXT, payload_hash TEXT, signature_status TEXT NOT NULL,
  status TEXT NOT NULL, attempts INTEGER NOT NULL, max_attempts INTEGER NOT NULL, last_attempt_at INTEGER,
  next_attempt_at INTEGER);
CREATE UNIQUE INDEX deliveries_inbound_id ON deliveries(tenant_id, connection_id, provider_delivery_id)
  WHERE provider_delivery_id IS NOT NULL;
CREATE INDEX deliveries_due ON deliveries(tenant_id, next_attempt_at) WHERE status IN ('Pending', 'Failed') AND direction = 'Outbound';
CREATE INDEX deliveries_by_subscription ON deliveries(tenant_id, subscription_id, delivery_id);
CREATE INDEX deliveries_by_status ON deliveries(tenant_id, direction, status, delivery_id);
CREATE TABLE deliveries_delivery_attempts()sql" INTEGRATION_CHILD("deliveries", "delivery_id") R"sql(
  attempt INTEGER NOT NULL, http_status INTEGER, latency_ms INTEGER NOT NULL, response_excerpt TEXT, error TEXT,
  attempted_at INTEGER NOT NULL, PRIMARY KEY(owner_id, position));

CREATE TABLE outbox(sequence INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
  tenant_id TEXT NOT NULL, aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL, aggregate_version INTEGER NOT NULL,
  event_type TEXT NOT NULL, occurred_at INTEGER NOT NULL, envelope TEXT NOT NULL, published_at INTEGER);
CREATE INDEX outbox_pending ON outbox(sequence) WHERE published_at IS NULL;
)sql",
    // 2: retry leases. A worker claims a due failure until lease_until; another worker skips it
    // until then, and an expired lease (a worker that died) makes it claimable again.
    R"sql(
ALTER TABLE failures ADD COLUMN lease_owner TEXT;
ALTER TABLE failures ADD COLUMN lease_until INTEGER;
)sql",
    // 3: a run's attempts move into the run row as a JSON array (the JSON of RunAttempt), so that
    // recording a run writes one row and listing runs reads no child rows.
    R"sql(
ALTER TABLE runs ADD COLUMN run_attempts TEXT NOT NULL DEFAULT '[]';
UPDATE runs SET run_attempts = (
  SELECT COALESCE(json_group_array(json(a.attempt_json)), '[]') FROM (
    SELECT json_object('attempt', attempt, 'status', status, 'errorClass', error_class, 'httpStatus', http_status,
                       'latencyMs', latency_ms,
                       'startedAt', strftime('%Y-%m-%dT%H:%M:%S', started_at / 1000, 'unixepoch') || '.' ||
                                    printf('%03d', started_at % 1000) || 'Z') AS attempt_json
    FROM runs_run_attempts WHERE owner_id = runs.run_id ORDER BY position) AS a);
DROP TABLE runs_run_attempts;
)sql",
    // 4: assemblyName + version is unique among global clients and within one tenant's view
    // (global clients and its own), no longer across tenants: a claim is keyed by the client's
    // tenant ('' for global). And a connection keeps what its latest health probe saw.
    R"sql(
CREATE TABLE assembly_versions_by_tenant(tenant_id TEXT NOT NULL, assembly_name TEXT NOT NULL, version TEXT NOT NULL,
  api_client_id TEXT NOT NULL REFERENCES api_clients(api_client_id) ON DELETE CASCADE,
  PRIMARY KEY(tenant_id, assembly_name, version));
INSERT INTO assembly_versions_by_tenant
  SELECT c.tenant_id, a.assembly_name, a.version, a.api_client_id
  FROM assembly_versions a JOIN api_clients c ON c.api_client_id = a.api_client_id;
DROP TABLE assembly_versions;
ALTER TABLE assembly_versions_by_tenant RENAME TO assembly_versions;
ALTER TABLE connections ADD COLUMN health_reason TEXT;
)sql",
    // 5: a connection chooses its provider's environment, and an operation names its class (the
    // connection endpoint it uses).
    R"sql(
ALTER TABLE connections ADD COLUMN environment TEXT;
ALTER TABLE api_clients_operations ADD COLUMN operation_class TEXT;
)sql",
    // 6: an outbox row counts its failed publications and parks as dead after too many (its
    // aggregate's later rows wait behind it); a failure may name an outbox event; pending
    // authorization-code flows, API keys (hashes only), Idempotency-Key records and inbound
    // webhook registrations move into this database (the host kept the last three in host.db).
    R"sql(
ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN dead_at INTEGER;
CREATE INDEX outbox_dead ON outbox(tenant_id, aggregate_type, aggregate_id, sequence) WHERE dead_at IS NOT NULL;
ALTER TABLE failures ADD COLUMN event_id TEXT;
CREATE TABLE pending_authorizations(tenant_id TEXT NOT NULL, state_hash TEXT NOT NULL, provider_id TEXT NOT NULL,
  connection_id TEXT, actor TEXT NOT NULL, settings TEXT NOT NULL, secret_ref TEXT NOT NULL, expires_at INTEGER NOT NULL,
  PRIMARY KEY(tenant_id, state_hash));
CREATE INDEX pending_authorizations_by_expiry ON pending_authorizations(tenant_id, expires_at);
CREATE TABLE api_keys(key_hash TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, admin INTEGER NOT NULL,
  created_at INTEGER NOT NULL);
CREATE TABLE idempotency_keys(tenant_id TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL,
  created_at INTEGER NOT NULL, PRIMARY KEY(tenant_id, key));
CREATE TABLE inbound_webhooks(tenant_id TEXT NOT NULL, connection_id TEXT NOT NULL, scheme TEXT NOT NULL,
  secret_name TEXT NOT NULL, PRIMARY KEY(tenant_id, connection_id));
)sql",
    // 7: outbound webhooks. A subscription may be ordered and rate limited, keeps its previous
    // signing secret during a rotation and counts its consecutive failures. A delivery worker
    // leases due deliveries (across tenants, earliest due first); fan-out is idempotent (one
    // outbound delivery per tenant, subscription and event); published events remember their
    // idempotency key and payload hash; retention finds old deliveries and payloads by time.
    R"sql(
ALTER TABLE subscriptions ADD COLUMN ordered INTEGER NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN max_per_second INTEGER;
ALTER TABLE subscriptions ADD COLUMN previous_signing_secret_ref TEXT;
ALTER TABLE subscriptions ADD COLUMN previous_secret_until INTEGER;
ALTER TABLE subscriptions ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN deactivation_reason TEXT;
ALTER TABLE deliveries ADD COLUMN lease_owner TEXT;
ALTER TABLE deliveries ADD COLUMN lease_until INTEGER;
CREATE UNIQUE INDEX deliveries_outbound_event ON deliveries(tenant_id, subscription_id, event_id)
  WHERE direction = 'Outbound' AND subscription_id IS NOT NULL AND event_id IS NOT NULL;
CREATE INDEX deliveries_claim ON deliveries(next_attempt_at) WHERE status IN ('Pending', 'Failed') AND direction = 'Outbound';
CREATE INDEX deliveries_ended ON deliveries(tenant_id, last_attempt_at);
CREATE INDEX deliveries_with_payload ON deliveries(tenant_id, created_at) WHERE payload_ref IS NOT NULL;
CREATE TABLE published_events(event_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, event_type TEXT NOT NULL,
  idempotency_key TEXT, payload_ref TEXT NOT NULL, payload_hash TEXT NOT NULL, delivery_ids TEXT NOT NULL,
  published_at INTEGER NOT NULL);
CREATE UNIQUE INDEX published_events_by_key ON published_events(tenant_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX published_events_by_time ON published_events(tenant_id, published_at);
)sql",
    // 8: inbound webhooks. The inbound route has no tenant: a registration is found by its
    // connection id alone. A rotated secret keeps verifying for a while, a refused delivery keeps
    // its reason, and small raw payloads live here, committed with their delivery (no file and
    // no fsync each); deleting a delivery deletes its payload.
    R"sql(
ALTER TABLE inbound_webhooks ADD COLUMN previous_secret_name TEXT;
ALTER TABLE inbound_webhooks ADD COLUMN previous_until INTEGER;
CREATE INDEX inbound_webhooks_by_connection ON inbound_webhooks(connection_id);
ALTER TABLE deliveries ADD COLUMN rejection_reason TEXT;
CREATE TABLE delivery_payloads(delivery_id TEXT PRIMARY KEY REFERENCES deliveries(delivery_id) ON DELETE CASCADE,
  tenant_id TEXT NOT NULL, bytes BLOB NOT NULL);
)sql",
    // 9: fewer index entries per delivery write. deliveries_claim holds the same rows in the
    // same order as deliveries_due, which no query needs any more; an inbound delivery (no
    // subscription) and a delivery not attempted yet (no last attempt) have no entry in the
    // indexes that are only ever searched by those columns.
    R"sql(
DROP INDEX deliveries_due;
DROP INDEX deliveries_by_subscription;
CREATE INDEX deliveries_by_subscription ON deliveries(tenant_id, subscription_id, delivery_id)
  WHERE subscription_id IS NOT NULL;
DROP INDEX deliveries_ended;
CREATE INDEX deliveries_ended ON deliveries(tenant_id, last_attempt_at) WHERE last_attempt_at IS NOT NULL;
)sql",
    // 10: small run bodies live here, committed with their run (no blob write and no fsync of
    // their own); deleting a run deletes its bodies; retention purges them by age.
    R"sql(
CREATE TABLE run_bodies(run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE, part TEXT NOT NULL,
  tenant_id TEXT NOT NULL, bytes BLOB NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY(run_id, part));
CREATE INDEX run_bodies_by_time ON run_bodies(tenant_id, created_at);
)sql",
    // 11: an inbound canonical event's body is stored once, as its delivery's payload: the
    // outbox row's envelope leaves `data.body` out and names the payload's format here
    // ('json' or 'form'); reading the event puts the body back.
    R"sql(
ALTER TABLE outbox ADD COLUMN body_from_payload TEXT;
)sql",
    // 12: the outbox without AUTOINCREMENT and without the UNIQUE index on event_id, which no
    // query reads: each row wrote them both (the sqlite_sequence row and a random-key B-tree
    // insert). A rowid is reused only after the row with the largest one is deleted, and
    // nothing deletes that one (retention keeps the newest row), so `sequence` still grows with
    // commit order and never names two rows. The rows keep their sequences.
    R"sql(
CREATE TABLE outbox_12(sequence INTEGER PRIMARY KEY, event_id TEXT NOT NULL, tenant_id TEXT NOT NULL,
  aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL, aggregate_version INTEGER NOT NULL,
  event_type TEXT NOT NULL, occurred_at INTEGER NOT NULL, envelope TEXT NOT NULL, published_at INTEGER,
  attempts INTEGER NOT NULL DEFAULT 0, dead_at INTEGER, body_from_payload TEXT);
INSERT INTO outbox_12 (sequence, event_id, tenant_id, aggregate_type, aggregate_id, aggregate_version, event_type,
  occurred_at, envelope, published_at, attempts, dead_at, body_from_payload)
  SELECT sequence, event_id, tenant_id, aggregate_type, aggregate_id, aggregate_version, event_type,
  occurred_at, envelope, published_at, attempts, dead_at, body_from_payload FROM outbox ORDER BY sequence;
DROP TABLE outbox;
ALTER TABLE outbox_12 RENAME TO outbox;
CREATE INDEX outbox_pending ON outbox(sequence) WHERE published_at IS NULL;
CREATE INDEX outbox_dead ON outbox(tenant_id, aggregate_type, aggregate_id, sequence) WHERE dead_at IS NOT NULL;
)sql",
    // 13: a run's small bodies are columns of its row: recording a run wrote two body rows, each
    // into three B-trees (the table, its key and its time index): a fifth of the store's CPU per
    // recorded run (commit_bench's store_recorded_runs). Retention finds the runs that still
    // hold a body by this partial index, one entry per run, and empties them; the bodies keep the
    // time of their run.
    R"sql(
ALTER TABLE runs ADD COLUMN request_body BLOB;
ALTER TABLE runs ADD COLUMN response_body BLOB;
UPDATE runs SET
  request_body = (SELECT bytes FROM run_bodies b WHERE b.run_id = runs.run_id AND b.part = 'request'),
  response_body = (SELECT bytes FROM run_bodies b WHERE b.run_id = runs.run_id AND b.part = 'response')
  WHERE run_id IN (SELECT run_id FROM run_bodies);
DROP TABLE run_bodies;
CREATE INDEX runs_with_bodies ON runs(tenant_id, created_at) WHERE request_body IS NOT NULL OR response_body IS NOT NULL;
)sql",
    // 14: runs keyed by (tenant_id, run_id), which every read of a run is scoped by: listing a
    // tenant's runs walks that key in order, where it read and sorted all of them through the
    // status index; a connection's runs likewise walk (tenant_id, connection_id, run_id), where
    // the status between them sorted every run of the connection. The status index holds only the
    // runs that are not Completed (the ones recovery and a status filter look for), so recording
    // a completed run writes one B-tree fewer. A run keeps its columns and values.
    R"sql(
CREATE TABLE runs_14(run_id TEXT NOT NULL, )sql" INTEGRATION_META R"sql(,
  project_id TEXT NOT NULL, connection_id TEXT NOT NULL, provider_id TEXT NOT NULL, operation TEXT NOT NULL,
  idempotency_key TEXT, request_ref TEXT, response_ref TEXT, status TEXT NOT NULL, attempts INTEGER NOT NULL,
  external_ref TEXT, started_at INTEGER, completed_at INTEGER, latency_ms INTEGER, run_attempts TEXT NOT NULL DEFAULT '[]',
  request_body BLOB, response_body BLOB, PRIMARY KEY(tenant_id, run_id));
INSERT INTO runs_14 (run_id, tenant_id, created_at, created_by, updated_at, updated_by, row_version, project_id,
  connection_id, provider_id, operation, idempotency_key, request_ref, response_ref, status, attempts, external_ref,
  started_at, completed_at, latency_ms, run_attempts, request_body, response_body)
  SELECT run_id, tenant_id, created_at, created_by, updated_at, updated_by, row_version, project_id, connection_id,
  provider_id, operation, idempotency_key, request_ref, response_ref, status, attempts, external_ref, started_at,
  completed_at, latency_ms, run_attempts, request_body, response_body FROM runs ORDER BY tenant_id, run_id;
DROP TABLE runs;
ALTER TABLE runs_14 RENAME TO runs;
CREATE INDEX runs_by_connection ON runs(tenant_id, connection_id, run_id);
CREATE INDEX runs_unfinished ON runs(tenant_id, status, run_id) WHERE status <> 'Completed';
CREATE UNIQUE INDEX runs_by_idempotency_key ON runs(tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_with_bodies ON runs(tenant_id, created_at) WHERE request_body IS NOT NULL OR response_body IS NOT NULL;
)sql",
    // 15: an inbound delivery's payload kept in the store is a column of its row, as a run's
    // bodies are (13): receiving one wrote a second row into two B-trees (the payload table and
    // its key). Deleting the delivery deletes it; the payloads move byte for byte.
    R"sql(
ALTER TABLE deliveries ADD COLUMN payload BLOB;
UPDATE deliveries SET payload = (SELECT bytes FROM delivery_payloads p WHERE p.delivery_id = deliveries.delivery_id)
  WHERE delivery_id IN (SELECT delivery_id FROM delivery_payloads);
DROP TABLE delivery_payloads;
)sql",
    // 16: a page of a tenant's deliveries of one direction (the inbound list, with or without a
    // connection) walks (tenant_id, direction, delivery_id) in order, where the status between
    // them sorted every delivery of that direction. The status index keeps only the deliveries
    // that are not settled (Pending, Failed, DeadLettered: what a status filter looks for);
    // Accepted and Delivered ones, most of them, walk the direction's key.
    R"sql(
DROP INDEX deliveries_by_status;
CREATE INDEX deliveries_by_direction ON deliveries(tenant_id, direction, delivery_id);
CREATE INDEX deliveries_unsettled ON deliveries(tenant_id, direction, status, delivery_id)
  WHERE status NOT IN ('Accepted', 'Delivered');
)sql",
    // 17: a page of a tenant's failures walks (tenant_id, failure_id) in order, where it read every
    // failure of the tenant through the delivery index and sorted them. A failure has a run or a
    // delivery (or neither), so those two indexes hold only the failures that have one: recording
    // a failure writes as many B-trees as before.
    R"sql(
DROP INDEX failures_by_run;
DROP INDEX failures_by_delivery;
CREATE INDEX failures_by_tenant ON failures(tenant_id, failure_id);
CREATE INDEX failures_by_run ON failures(tenant_id, run_id, failure_id) WHERE run_id IS NOT NULL;
CREATE INDEX failures_by_delivery ON failures(tenant_id, delivery_id, failure_id) WHERE delivery_id IS NOT NULL;
)sql",
    // 18: an outbox row's text leaves out the fields that identify its event (id, type, time,
    // tenant, aggregate and its version), which are the row's columns; a row written before keeps
    // them in its text and reads the same. The tables do not change: the version keeps an older
    // library, which would not read the new rows whole, from opening the file.
    R"sql(
SELECT 1;
)sql",
    // 19: an inbound delivery is accepted or refused in the unit that makes it, so its id (a ULID
    // of that moment) orders it by the time it ended: retention walks the direction's key up to
    // the first id of its cutoff. The time index keeps only outbound deliveries, whose last
    // attempt comes later: receiving a webhook writes one B-tree fewer.
    R"sql(
DROP INDEX deliveries_ended;
CREATE INDEX deliveries_ended ON deliveries(tenant_id, last_attempt_at)
  WHERE last_attempt_at IS NOT NULL AND direction = 'Outbound';
)sql",
    // 20: a credential's failures (the rotation worker raises one per credential and looks for it
    // first) are found by the credential, where a tenant with many open failures hid it.
    R"sql(
CREATE INDEX failures_by_credential ON failures(tenant_id, credential_id, failure_id) WHERE credential_id IS NOT NULL;
)sql",
    // 21: a tenant's deliveries waiting to be sent, earliest due first: while one tenant holds its
    // share of a worker's slots, a claim steps from tenant to tenant past it instead of reading
    // its whole backlog in `deliveries_claim` (every tenant's, in due order).
    R"sql(
CREATE INDEX deliveries_claim_by_tenant ON deliveries(tenant_id, next_attempt_at)
  WHERE status IN ('Pending', 'Failed') AND direction = 'Outbound';
)sql",
    // 22: a connection's failures (the health prober records one per failing connection and looks
    // for it first) are found by the connection.
    R"sql(
CREATE INDEX failures_by_connection ON failures(tenant_id, connection_id, failure_id) WHERE connection_id IS NOT NULL;
)sql",
    // 23: the head of an ordered subscription (its oldest delivery still to send) is one search:
    // a claim looked for it by sorting the subscription's deliveries once per due delivery it
    // read, so a backlog behind a head in flight cost its square (5,000 deliveries: 5.5 s of the
    // writer per claim).
    R"sql(
CREATE INDEX deliveries_ordered_head ON deliveries(tenant_id, subscription_id, created_at)
  WHERE status IN ('Pending', 'Failed') AND direction = 'Outbound';
)sql",
    // 24: an operation may name the header its vendor dedupes repeated requests by.
    R"sql(
ALTER TABLE api_clients_operations ADD COLUMN idempotency_header TEXT;
)sql",
    // 25: an inbound webhook keeps every secret a rotation replaced until its overlap ends (a
    // second rotation dropped the first one's at once): the newest stays in previous_secret_name
    // and previous_until, the older ones are a JSON array of {"name", "until"}.
    R"sql(
ALTER TABLE inbound_webhooks ADD COLUMN earlier_secrets TEXT;
)sql",
    // 26: likewise a subscription's signing secrets: the newest replaced one stays in
    // previous_signing_secret_ref and previous_secret_until, older ones are a JSON array of
    // {"ref", "until"}.
    R"sql(
ALTER TABLE subscriptions ADD COLUMN earlier_signing_secrets TEXT;
)sql",
    // 27: who is refreshing a credential's OAuth2 token: processes sharing the store take turns,
    // since the provider takes each refresh token once.
    R"sql(
CREATE TABLE credential_refresh_leases(tenant_id TEXT NOT NULL, credential_id TEXT NOT NULL, owner TEXT NOT NULL,
  until INTEGER NOT NULL, PRIMARY KEY (tenant_id, credential_id)) WITHOUT ROWID;
)sql",
    // 28: why an outbound delivery was put off without an attempt (the sender's own failure).
    R"sql(
ALTER TABLE deliveries ADD COLUMN deferred_reason TEXT;
)sql",
    // 29: a failed publication waits before the next one (the relay's backoff), and its
    // aggregate's later events wait with it.
    R"sql(
ALTER TABLE outbox ADD COLUMN retry_at INTEGER;
CREATE INDEX outbox_waiting ON outbox(tenant_id, aggregate_type, aggregate_id, sequence)
  WHERE retry_at IS NOT NULL AND published_at IS NULL;
)sql",
    // 30: Idempotency-Keys go by age (retention), oldest first.
    R"sql(
CREATE INDEX idempotency_keys_by_time ON idempotency_keys(tenant_id, created_at);
)sql",
    // 31: the run service claims a key for a digest of the request itself; the reference host's
    // claims held digests of its HTTP bodies, which a retry across the upgrade would not match
    // (its run still replays by the key, and the next request claims it anew).
    R"sql(
DELETE FROM idempotency_keys;
)sql",
    // 32: when a subscription's run of failures began: auto-disable waits for it to last.
    R"sql(
ALTER TABLE subscriptions ADD COLUMN failing_since INTEGER;
)sql",
};

#undef INTEGRATION_META
#undef INTEGRATION_CHILD

static_assert(migrations.size() == sqlite_schema_version, "bump sqlite_schema_version with each migration");

result<int> user_version(database& db) {
    auto st = db.prepare("PRAGMA user_version");
    if (!st) return st.error();
    auto row = (*st)->step();
    if (!row) return row.error();
    int v = static_cast<int>((*st)->int64(0));
    (*st)->reset();
    return v;
}

result<void> check_not_newer(int v) {
    if (v > sqlite_schema_version)
        return error{errc::schema_too_new, "the database has schema version " + std::to_string(v) +
                                               " but this library knows only up to " +
                                               std::to_string(sqlite_schema_version) +
                                               "; upgrade the library instead of opening it with an older one"};
    return {};
}

}  // namespace

result<void> migrate(database& db) {
    auto v = user_version(db);
    if (!v) return v.error();
    if (auto r = check_not_newer(*v); !r) return r;
    if (*v == sqlite_schema_version) return {};
    // Another process may migrate at the same time: re-read the version under the write lock.
    auto tx = transaction::begin(db);
    if (!tx) return tx.error();
    v = user_version(db);
    if (!v) return v.error();
    if (auto r = check_not_newer(*v); !r) return r;
    for (int i = *v; i < sqlite_schema_version; ++i) {
        if (auto r = db.exec(migrations[static_cast<std::size_t>(i)]); !r)
            return error{r.error().code(), "migration " + std::to_string(i + 1) + " failed: " + r.error().detail()};
    }
    if (auto r = db.exec("PRAGMA user_version = " + std::to_string(sqlite_schema_version)); !r) return r;
    return tx->commit();
}

}  // namespace integration::storage::sqlite
