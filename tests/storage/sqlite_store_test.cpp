#include <integration/backends/sqlite/sqlite_store.hpp>

#include "store_conformance.hpp"
#include "support/sqlite_file.hpp"

#include <integration/core/id.hpp>
#include <integration/services/outbox_relay.hpp>
#include <integration/services/registry.hpp>

#include <boost/json/serialize.hpp>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace integration::testing {
namespace {

using storage::unit_of_work;

std::unique_ptr<storage::store> open_sqlite(temp_dir const& dir, clock const* clk) {
    return must(storage::open_sqlite_store({.path = dir.file("integration.db"), .clock = clk}));
}

INSTANTIATE_TEST_SUITE_P(sqlite, store_conformance, ::testing::Values(store_backend{"sqlite", open_sqlite}),
                         [](auto const& info) { return info.param.name; });

request_context tenant(std::string t) { return request_context::for_tenant(std::move(t), "tester"); }

std::size_t count_providers(storage::store& s, request_context const& ctx) {
    std::size_t n = 0;
    storage::page_request req{.limit = 500};
    do {
        must(s.read(ctx, [&](unit_of_work& uow) -> result<void> {
            auto page = must(uow.providers().list(req));
            n += page.items.size();
            req.cursor = page.next_cursor;
            return {};
        }));
    } while (!req.cursor.empty());
    return n;
}

TEST(sqlite_store, data_survives_closing_and_reopening_the_file) {
    temp_dir dir;
    std::string id;
    {
        auto s = open_sqlite(dir, nullptr);
        must(s->transact(tenant("t1"), [&](unit_of_work& uow) -> result<void> {
            auto p = must(providers::integration_provider::register_new(tenant("t1"), system_clock::instance().now(), provider_spec()));
            id = p.id();
            return uow.providers().save(p);
        }));
    }
    auto s = open_sqlite(dir, nullptr);
    must(s->read(tenant("t1"), [&](unit_of_work& uow) -> result<void> {
        EXPECT_EQ(must(uow.providers().find(id)).data().key, "acme");
        return {};
    }));
}

TEST(sqlite_store, a_database_from_a_newer_schema_is_refused) {
    temp_dir dir;
    { auto s = open_sqlite(dir, nullptr); }
    exec_sql(dir.file("integration.db"), "PRAGMA user_version = 99");
    auto r = storage::open_sqlite_store({.path = dir.file("integration.db")});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::schema_too_new);
    EXPECT_NE(r.error().detail().find("99"), std::string::npos);
}

TEST(sqlite_store, migrations_create_the_current_schema_version) {
    temp_dir dir;
    { auto s = open_sqlite(dir, nullptr); }
    auto const path = dir.file("integration.db");
    EXPECT_EQ(query_rows(path, "PRAGMA user_version"), std::vector<std::string>{std::to_string(storage::sqlite_schema_version)});
    EXPECT_EQ(query_rows(path, "PRAGMA journal_mode"), std::vector<std::string>{"wal"});
}

/** SQLite's plan for `sql` on the file at `path`, one step per line. */
std::string query_plan(std::string const& path, std::string const& sql) {
    std::string out;
    for (auto const& row : query_rows(path, "EXPLAIN QUERY PLAN " + sql)) out += row + "\n";
    return out;
}

/** The ids of every item `list(uow, page)` lists in `ctx`'s tenant, page by page. */
template <class List>
std::vector<std::string> listed_ids(storage::store& s, request_context const& ctx, std::size_t limit, List list) {
    std::vector<std::string> out;
    storage::page_request p{.limit = limit};
    for (;;) {
        auto page = must(storage::read_for(s, ctx, [&](unit_of_work& uow) { return list(uow, p); }));
        for (auto const& item : page.items) out.push_back(item.id());
        if (page.next_cursor.empty()) return out;
        p.cursor = page.next_cursor;
    }
}

/** Registers provider `key` in `ctx`'s tenant; its id. */
std::string registered_provider(storage::store& s, request_context const& ctx, std::string const& key) {
    std::string id;
    must(s.transact(ctx, [&](unit_of_work& uow) -> result<void> {
        auto p = must(providers::integration_provider::register_new(ctx, system_clock::instance().now(), provider_spec(key)));
        id = p.id();
        return uow.providers().save(p);
    }));
    return id;
}

/** `ids` in order: ids made within one millisecond are not. */
std::vector<std::string> sorted(std::vector<std::string> ids) {
    std::sort(ids.begin(), ids.end());
    return ids;
}

/** Undoes a migration that only added `index`: drops it and sets the file's version to `version`. */
void without_index(std::string const& path, std::string const& index, int version) {
    exec_sql(path, "DROP INDEX " + index + "; PRAGMA user_version = " + std::to_string(version) + ";");
}

/** Turns a current file back into schema 29: Idempotency-Keys have no index by age (migration 30). */
/** Turns a current file back into schema 31: subscriptions keep no failing_since (migration 32). */
void back_to_schema_31(std::string const& path) {
    exec_sql(path, "ALTER TABLE subscriptions DROP COLUMN failing_since; PRAGMA user_version = 31;");
}

/** Turns a current file back into schema 30 (migration 31 only deletes rows). */
void back_to_schema_30(std::string const& path) {
    back_to_schema_31(path);
    exec_sql(path, "PRAGMA user_version = 30;");
}

void back_to_schema_29(std::string const& path) {
    back_to_schema_30(path);
    without_index(path, "idempotency_keys_by_time", 29);
}

/** Turns a current file back into schema 28: outbox rows have no retry time (migration 29). */
void back_to_schema_28(std::string const& path) {
    back_to_schema_29(path);
    exec_sql(path, "DROP INDEX outbox_waiting; ALTER TABLE outbox DROP COLUMN retry_at; PRAGMA user_version = 28;");
}

/** Turns a current file back into schema 27: deliveries keep no deferral reason (migration 28). */
void back_to_schema_27(std::string const& path) {
    back_to_schema_28(path);
    exec_sql(path, "ALTER TABLE deliveries DROP COLUMN deferred_reason; PRAGMA user_version = 27;");
}

/** Turns a current file back into schema 26: no refresh leases (migration 27). */
void back_to_schema_26(std::string const& path) {
    back_to_schema_27(path);
    exec_sql(path, "DROP TABLE credential_refresh_leases; PRAGMA user_version = 26;");
}

/** Turns a current file back into schema 25: a subscription keeps one replaced signing secret (migration 26). */
void back_to_schema_25(std::string const& path) {
    back_to_schema_26(path);
    exec_sql(path, "ALTER TABLE subscriptions DROP COLUMN earlier_signing_secrets; PRAGMA user_version = 25;");
}

/** Turns a current file back into schema 24: an inbound webhook keeps one replaced secret (migration 25). */
void back_to_schema_24(std::string const& path) {
    back_to_schema_25(path);
    exec_sql(path, "ALTER TABLE inbound_webhooks DROP COLUMN earlier_secrets; PRAGMA user_version = 24;");
}

/** Turns a current file back into schema 23: operations name no idempotency header (migration 24). */
void back_to_schema_23(std::string const& path) {
    back_to_schema_24(path);
    exec_sql(path, "ALTER TABLE api_clients_operations DROP COLUMN idempotency_header; PRAGMA user_version = 23;");
}

/** Turns a current file back into schema 22: no index of ordered subscriptions' heads (migration 23). */
void back_to_schema_22(std::string const& path) {
    back_to_schema_23(path);
    without_index(path, "deliveries_ordered_head", 22);
}

/** Turns a current file back into schema 21: no connection index of failures (migration 22). */
void back_to_schema_21(std::string const& path) {
    back_to_schema_22(path);
    without_index(path, "failures_by_connection", 21);
}

/** Turns a current file back into schema 20: no per-tenant claim index of deliveries (migration 21). */
void back_to_schema_20(std::string const& path) {
    back_to_schema_21(path);
    without_index(path, "deliveries_claim_by_tenant", 20);
}

/** Turns a current file back into schema 19: no credential index of failures (migration 20). */
void back_to_schema_19(std::string const& path) {
    back_to_schema_20(path);
    without_index(path, "failures_by_credential", 19);
}

/** Turns a current file back into schema 18: every ended delivery in the time index, inbound
 *  ones too (migration 19). */
void back_to_schema_18(std::string const& path) {
    back_to_schema_19(path);
    exec_sql(path, R"sql(
DROP INDEX deliveries_ended;
CREATE INDEX deliveries_ended ON deliveries(tenant_id, last_attempt_at) WHERE last_attempt_at IS NOT NULL;
PRAGMA user_version = 18;
)sql");
}

/** Turns a current file back into schema 16: no tenant index of failures, every failure in the
 *  run and delivery indexes (migration 17). */
void back_to_schema_16(std::string const& path) {
    back_to_schema_18(path);
    exec_sql(path, R"sql(
DROP INDEX failures_by_tenant;
DROP INDEX failures_by_run;
DROP INDEX failures_by_delivery;
CREATE INDEX failures_by_run ON failures(tenant_id, run_id, failure_id);
CREATE INDEX failures_by_delivery ON failures(tenant_id, delivery_id, failure_id);
PRAGMA user_version = 16;
)sql");
}

/** Turns a current file back into schema 15: every delivery in the status index, which leads
 *  with direction and status (migration 16). */
void back_to_schema_15(std::string const& path) {
    back_to_schema_16(path);
    exec_sql(path, R"sql(
DROP INDEX deliveries_by_direction;
DROP INDEX deliveries_unsettled;
CREATE INDEX deliveries_by_status ON deliveries(tenant_id, direction, status, delivery_id);
PRAGMA user_version = 15;
)sql");
}

/** Turns a current file back into schema 14: kept payloads as rows of their own table
 *  (migration 15). */
void back_to_schema_14(std::string const& path) {
    back_to_schema_15(path);
    exec_sql(path, R"sql(
CREATE TABLE delivery_payloads(delivery_id TEXT PRIMARY KEY REFERENCES deliveries(delivery_id) ON DELETE CASCADE,
  tenant_id TEXT NOT NULL, bytes BLOB NOT NULL);
INSERT INTO delivery_payloads SELECT delivery_id, tenant_id, payload FROM deliveries WHERE payload IS NOT NULL;
ALTER TABLE deliveries DROP COLUMN payload;
PRAGMA user_version = 14;
)sql");
}

/** Turns a current file back into schema 13: runs keyed by run_id alone, every run in the
 *  status index (migration 14), holding the same rows. */
void back_to_schema_13(std::string const& path) {
    back_to_schema_14(path);
    exec_sql(path, R"sql(
CREATE TABLE runs_13(run_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, created_at INTEGER NOT NULL, created_by TEXT NOT NULL,
  updated_at INTEGER NOT NULL, updated_by TEXT NOT NULL, row_version INTEGER NOT NULL,
  project_id TEXT NOT NULL, connection_id TEXT NOT NULL, provider_id TEXT NOT NULL, operation TEXT NOT NULL,
  idempotency_key TEXT, request_ref TEXT, response_ref TEXT, status TEXT NOT NULL, attempts INTEGER NOT NULL,
  external_ref TEXT, started_at INTEGER, completed_at INTEGER, latency_ms INTEGER, run_attempts TEXT NOT NULL DEFAULT '[]',
  request_body BLOB, response_body BLOB);
INSERT INTO runs_13 SELECT run_id, tenant_id, created_at, created_by, updated_at, updated_by, row_version, project_id,
  connection_id, provider_id, operation, idempotency_key, request_ref, response_ref, status, attempts, external_ref,
  started_at, completed_at, latency_ms, run_attempts, request_body, response_body FROM runs;
DROP TABLE runs;
ALTER TABLE runs_13 RENAME TO runs;
CREATE INDEX runs_by_connection ON runs(tenant_id, connection_id, status, run_id);
CREATE INDEX runs_by_status ON runs(tenant_id, status, run_id);
CREATE UNIQUE INDEX runs_by_idempotency_key ON runs(tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_with_bodies ON runs(tenant_id, created_at) WHERE request_body IS NOT NULL OR response_body IS NOT NULL;
PRAGMA user_version = 13;
)sql");
}

/** Turns a current file back into schema 12: run bodies as rows of their own table, timed by
 *  their run (migration 13). */
void back_to_schema_12(std::string const& path) {
    back_to_schema_13(path);
    exec_sql(path, R"sql(
CREATE TABLE run_bodies(run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE, part TEXT NOT NULL,
  tenant_id TEXT NOT NULL, bytes BLOB NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY(run_id, part));
CREATE INDEX run_bodies_by_time ON run_bodies(tenant_id, created_at);
INSERT INTO run_bodies SELECT run_id, 'request', tenant_id, request_body, created_at FROM runs WHERE request_body IS NOT NULL;
INSERT INTO run_bodies SELECT run_id, 'response', tenant_id, response_body, created_at FROM runs WHERE response_body IS NOT NULL;
DROP INDEX runs_with_bodies;
ALTER TABLE runs DROP COLUMN request_body;
ALTER TABLE runs DROP COLUMN response_body;
PRAGMA user_version = 12;
)sql");
}

/** Turns a current file back into schema 11: the outbox with AUTOINCREMENT and a UNIQUE index
 *  on event_id (migration 12), holding the same rows. */
void back_to_schema_11(std::string const& path) {
    back_to_schema_12(path);
    exec_sql(path, R"sql(
CREATE TABLE outbox_11(sequence INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
  tenant_id TEXT NOT NULL, aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL, aggregate_version INTEGER NOT NULL,
  event_type TEXT NOT NULL, occurred_at INTEGER NOT NULL, envelope TEXT NOT NULL, published_at INTEGER,
  attempts INTEGER NOT NULL DEFAULT 0, dead_at INTEGER, body_from_payload TEXT);
INSERT INTO outbox_11 SELECT * FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_11 RENAME TO outbox;
CREATE INDEX outbox_pending ON outbox(sequence) WHERE published_at IS NULL;
CREATE INDEX outbox_dead ON outbox(tenant_id, aggregate_type, aggregate_id, sequence) WHERE dead_at IS NOT NULL;
PRAGMA user_version = 11;
)sql");
}

/** Turns a current file back into schema 10: every outbox envelope whole (migration 11). */
void back_to_schema_10(std::string const& path) {
    back_to_schema_11(path);
    exec_sql(path, "ALTER TABLE outbox DROP COLUMN body_from_payload; PRAGMA user_version = 10;");
}

/** Turns a current file back into schema 9: no run bodies in the store (migration 10). */
void back_to_schema_9(std::string const& path) {
    back_to_schema_10(path);
    exec_sql(path, "DROP TABLE run_bodies; PRAGMA user_version = 9;");
}

/** Turns a current file back into schema 8: the delivery indexes as migration 7 made them. */
void back_to_schema_8(std::string const& path) {
    back_to_schema_9(path);
    exec_sql(path, R"sql(
CREATE INDEX deliveries_due ON deliveries(tenant_id, next_attempt_at) WHERE status IN ('Pending', 'Failed') AND direction = 'Outbound';
DROP INDEX deliveries_by_subscription;
CREATE INDEX deliveries_by_subscription ON deliveries(tenant_id, subscription_id, delivery_id);
DROP INDEX deliveries_ended;
CREATE INDEX deliveries_ended ON deliveries(tenant_id, last_attempt_at);
PRAGMA user_version = 8;
)sql");
}

/** Turns a current file back into schema 7: none of the inbound webhook columns, index and
 *  table of migration 8. */
void back_to_schema_7(std::string const& path) {
    back_to_schema_8(path);
    exec_sql(path, R"sql(
DROP TABLE delivery_payloads;
DROP INDEX inbound_webhooks_by_connection;
ALTER TABLE inbound_webhooks DROP COLUMN previous_secret_name;
ALTER TABLE inbound_webhooks DROP COLUMN previous_until;
ALTER TABLE deliveries DROP COLUMN rejection_reason;
PRAGMA user_version = 7;
)sql");
}

/** Turns a current file back into schema 6: none of the webhook columns, indexes and tables of
 *  migration 7. */
void back_to_schema_6(std::string const& path) {
    back_to_schema_7(path);
    exec_sql(path, R"sql(
DROP INDEX deliveries_outbound_event;
DROP INDEX deliveries_claim;
DROP INDEX deliveries_ended;
DROP INDEX deliveries_with_payload;
DROP TABLE published_events;
ALTER TABLE deliveries DROP COLUMN lease_owner;
ALTER TABLE deliveries DROP COLUMN lease_until;
ALTER TABLE subscriptions DROP COLUMN ordered;
ALTER TABLE subscriptions DROP COLUMN max_per_second;
ALTER TABLE subscriptions DROP COLUMN previous_signing_secret_ref;
ALTER TABLE subscriptions DROP COLUMN previous_secret_until;
ALTER TABLE subscriptions DROP COLUMN consecutive_failures;
ALTER TABLE subscriptions DROP COLUMN deactivation_reason;
PRAGMA user_version = 6;
)sql");
}

/** Turns a current file back into schema 4: no connection environment or operation class
 *  (migration 5), no outbox attempts or dead rows, no event id on a failure, none of the tables
 *  migration 6 adds. */
void back_to_schema_4(std::string const& path) {
    back_to_schema_6(path);
    exec_sql(path, R"sql(
DROP INDEX outbox_dead;
ALTER TABLE outbox DROP COLUMN attempts;
ALTER TABLE outbox DROP COLUMN dead_at;
ALTER TABLE failures DROP COLUMN event_id;
DROP TABLE pending_authorizations;
DROP TABLE api_keys;
DROP TABLE idempotency_keys;
DROP TABLE inbound_webhooks;
ALTER TABLE connections DROP COLUMN environment;
ALTER TABLE api_clients_operations DROP COLUMN operation_class;
PRAGMA user_version = 4;
)sql");
}

/** Turns a current file back into schema 3: claims of assemblyName + version keyed without a
 *  tenant, connections without a health reason or environment, operations without a class. */
void back_to_schema_3(std::string const& path) {
    back_to_schema_4(path);
    exec_sql(path, R"sql(
CREATE TABLE assembly_versions_3(assembly_name TEXT NOT NULL, version TEXT NOT NULL,
  api_client_id TEXT NOT NULL REFERENCES api_clients(api_client_id) ON DELETE CASCADE,
  PRIMARY KEY(assembly_name, version));
INSERT INTO assembly_versions_3 SELECT assembly_name, version, api_client_id FROM assembly_versions;
DROP TABLE assembly_versions;
ALTER TABLE assembly_versions_3 RENAME TO assembly_versions;
ALTER TABLE connections DROP COLUMN health_reason;
PRAGMA user_version = 3;
)sql");
}

TEST(sqlite_store, a_version_1_database_is_migrated_in_place_and_keeps_its_rows) {
    using namespace std::chrono_literals;
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto ctx = tenant("t1");
    std::string id;
    std::optional<runs::integration_run> run;
    {
        auto s = open_sqlite(dir, nullptr);
        must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto now = system_clock::instance().now();
            auto f = must(failures::integration_failure::record(
                ctx, now, failures::failure_source::run, "run-1", "prov-1",
                {failures::failure_category::transient, "http_503", "busy", failures::next_action::retry, now}));
            id = f.id();
            auto p = active_provider(ctx, now);
            auto conn = active_connection(ctx, now, p);
            run = must(runs::integration_run::create(ctx, now, conn, "sms.send"));
            must(run->start(conn, false, now));
            must(run->record_attempt({1, runs::attempt_status::failed, failures::failure_category::transient, 503, 12, now + 7ms}));
            must(run->record_attempt({2, runs::attempt_status::succeeded, std::nullopt, std::nullopt, 30, now + 999ms}));
            must(run->complete(now + 1s, std::nullopt, std::nullopt));
            if (auto r = uow.runs().save(*run); !r) return r;
            return uow.failures().save(f);
        }));
    }
    // Turn the file back into schema 1: attempts in their child table, no lease columns.
    back_to_schema_3(path);
    exec_sql(path, R"sql(
CREATE TABLE runs_run_attempts(owner_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE, position INTEGER NOT NULL,
  attempt INTEGER NOT NULL, status TEXT NOT NULL, error_class TEXT, http_status INTEGER, latency_ms INTEGER NOT NULL,
  started_at INTEGER NOT NULL, PRIMARY KEY(owner_id, position));
INSERT INTO runs_run_attempts
  SELECT r.run_id, j.key, j.value ->> 'attempt', j.value ->> 'status', j.value ->> 'errorClass', j.value ->> 'httpStatus',
         j.value ->> 'latencyMs',
         CAST(strftime('%s', substr(j.value ->> 'startedAt', 1, 19)) AS INTEGER) * 1000 + CAST(substr(j.value ->> 'startedAt', 21, 3) AS INTEGER)
  FROM runs r, json_each(r.run_attempts) j;
ALTER TABLE runs DROP COLUMN run_attempts;
ALTER TABLE failures DROP COLUMN lease_owner; ALTER TABLE failures DROP COLUMN lease_until;
PRAGMA user_version = 1;
)sql");
    auto s = open_sqlite(dir, nullptr);
    must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
        auto migrated = must(uow.runs().find(run->id()));
        EXPECT_EQ(migrated.data().run_attempts.size(), 2u);
        for (std::size_t i = 0; i < 2 && i < migrated.data().run_attempts.size(); ++i) {
            auto const& want = run->data().run_attempts[i];
            auto const& got = migrated.data().run_attempts[i];
            EXPECT_EQ(got.attempt, want.attempt);
            EXPECT_EQ(got.status, want.status);
            EXPECT_EQ(got.error_class, want.error_class);
            EXPECT_EQ(got.http_status, want.http_status);
            EXPECT_EQ(got.latency_ms, want.latency_ms);
            EXPECT_EQ(got.started_at, want.started_at);  // to the millisecond
        }
        EXPECT_EQ(must(uow.failures().find(id)).data().error_code, "http_503");
        auto claimed = must(uow.failures().claim_due(system_clock::instance().now() + std::chrono::seconds(1), "w",
                                                     system_clock::instance().now() + std::chrono::minutes(1), 10));
        EXPECT_EQ(claimed.size(), 1u);
        return {};
    }));
}

// Schema 4 keys each assemblyName + version claim by the client's tenant ('' for global): the
// claims of a schema 3 file keep holding within their tenant and globally, and stop holding
// across tenants. Its connections gain an empty health reason.
TEST(sqlite_store, a_version_3_database_scopes_its_assembly_claims_to_their_tenants) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto t1 = tenant("t1"), t2 = tenant("t2");
    auto admin = tenant("ops");
    admin.admin = true;
    auto now = system_clock::instance().now();
    std::string p1, connection_id;
    {
        auto s = open_sqlite(dir, nullptr);
        providers::registry reg(*s, system_clock::instance(), net::egress_policy{});
        p1 = must(reg.register_provider(t1, provider_spec())).id();
        must(reg.activate_client(t1, must(reg.register_client(t1, p1, client_spec("Mig.Client"))).id()));
        must(reg.activate_provider(t1, p1));
        auto global = provider_spec("shared");
        global.scope = providers::provider_scope::global;
        must(reg.register_client(admin, must(reg.register_provider(admin, global)).id(), client_spec("Global.Client")));
        must(s->transact(t1, [&](unit_of_work& uow) -> result<void> {
            auto conn = must(connections::integration_connection::create(t1, now, must(uow.providers().find(p1)),
                                                                         connection_spec()));
            connection_id = conn.id();
            return uow.connections().save(conn);
        }));
    }
    back_to_schema_3(path);
    auto s = open_sqlite(dir, nullptr);
    providers::registry reg(*s, system_clock::instance(), net::egress_policy{});
    auto p2 = must(reg.register_provider(t2, provider_spec())).id();
    EXPECT_TRUE(reg.register_client(t2, p2, client_spec("Mig.Client")));  // tenant t1's claim no longer reaches t2
    auto again = reg.register_client(t1, p1, client_spec("Mig.Client"));
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error(), errc::already_exists);
    auto global = reg.register_client(t2, p2, client_spec("Global.Client"));
    ASSERT_FALSE(global);
    EXPECT_EQ(global.error(), errc::already_exists);
    EXPECT_NE(global.error().detail().find("a global client"), std::string::npos) << global.error().detail();
    must(s->transact(t1, [&](unit_of_work& uow) -> result<void> {
        auto conn = must(uow.connections().find(connection_id));
        EXPECT_FALSE(conn.data().health_reason);
        must(conn.record_health({health_status::unhealthy, "expected HTTP 200 from /health, got 503"}, now));
        return uow.connections().save(conn);
    }));
    must(s->read(t1, [&](unit_of_work& uow) -> result<void> {
        EXPECT_EQ(must(uow.connections().find(connection_id)).data().health_reason, "expected HTTP 200 from /health, got 503");
        return {};
    }));
}

TEST(sqlite_store, a_file_that_is_not_a_database_gives_a_clear_error) {
    temp_dir dir;
    std::ofstream(dir.file("integration.db")) << "this is not sqlite, just some text that is long enough to be a header";
    auto r = storage::open_sqlite_store({.path = dir.file("integration.db")});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::storage_failure);
}

TEST(sqlite_store, deleting_the_file_under_a_running_store_fails_loudly) {
    temp_dir dir;
    auto s = open_sqlite(dir, nullptr);
    auto ctx = tenant("t1");
    must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
        auto p = must(providers::integration_provider::register_new(ctx, system_clock::instance().now(), provider_spec()));
        return uow.providers().save(p);
    }));
    std::filesystem::remove(dir.file("integration.db"));
    auto w = s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
        auto p = must(providers::integration_provider::register_new(ctx, system_clock::instance().now(), provider_spec("b")));
        return uow.providers().save(p);
    });
    ASSERT_FALSE(w);
    EXPECT_EQ(w.error(), errc::database_missing);
    auto r = s->read(ctx, [&](unit_of_work& uow) -> result<void> {
        ADD_FAILURE() << "a read ran on a deleted database";
        (void)uow;
        return {};
    });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::database_missing);
    EXPECT_FALSE(std::filesystem::exists(dir.file("integration.db")));
}

TEST(sqlite_store, two_threads_writing_one_file_through_two_stores_lose_nothing) {
    temp_dir dir;
    auto s1 = open_sqlite(dir, nullptr);
    auto s2 = open_sqlite(dir, nullptr);
    constexpr int per_store = 150;
    auto writer = [&](storage::store& s, std::string prefix) {
        auto ctx = tenant("t1");
        for (int i = 0; i < per_store; ++i)
            must(s.transact(ctx, [&](unit_of_work& uow) -> result<void> {
                auto p = must(providers::integration_provider::register_new(ctx, system_clock::instance().now(),
                                                                            provider_spec(prefix + std::to_string(i))));
                return uow.providers().save(p);
            }));
    };
    std::thread a(writer, std::ref(*s1), "a");
    std::thread b(writer, std::ref(*s2), "b");
    a.join();
    b.join();
    EXPECT_EQ(count_providers(*s1, tenant("t1")), 2u * per_store);
}

TEST(sqlite_store, two_processes_writing_one_file_lose_nothing) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    { auto s = open_sqlite(dir, nullptr); }
    constexpr int per_process = 200;
    auto cmd = [&](std::string const& prefix) {
        return std::string(INTEGRATION_STORAGE_PROBE) + " " + path + " t1 " + prefix + " " + std::to_string(per_process);
    };
    std::thread p1([&] { EXPECT_EQ(std::system(cmd("p").c_str()), 0); });
    std::thread p2([&] { EXPECT_EQ(std::system(cmd("q").c_str()), 0); });
    // This process writes too, at the same time.
    auto s = open_sqlite(dir, nullptr);
    auto ctx = tenant("t1");
    for (int i = 0; i < 50; ++i)
        must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto p = must(providers::integration_provider::register_new(ctx, system_clock::instance().now(), provider_spec("m" + std::to_string(i))));
            return uow.providers().save(p);
        }));
    p1.join();
    p2.join();
    EXPECT_EQ(count_providers(*s, ctx), 2u * per_process + 50u);
}

TEST(sqlite_store, grouped_commits_keep_each_unit_atomic_under_load) {
    temp_dir dir;
    auto s = must(storage::open_sqlite_store({.path = dir.file("g.db"), .max_batch = 64}));
    constexpr int threads = 16, each = 20;
    std::vector<std::thread> pool;
    std::atomic<int> committed{0}, started{0};
    // The writer is held by a first unit until every thread has queued its first unit, so that
    // they share commits however the machine schedules them.
    std::promise<void> gate;
    std::thread holder([&, opened = gate.get_future().share()] {
        must(s->transact(tenant("t0"), [&](unit_of_work&) -> result<void> {
            opened.wait();
            return {};
        }));
    });
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            auto ctx = tenant("t" + std::to_string(t % 2));
            for (int i = 0; i < each; ++i) {
                if (i == 0) ++started;
                auto r = s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
                    auto key = "k" + std::to_string(t) + "-" + std::to_string(i);
                    auto p1 = must(providers::integration_provider::register_new(ctx, system_clock::instance().now(), provider_spec(key)));
                    must(uow.providers().save(p1));
                    // Half the units then collide with themselves on the unique key: the whole unit must vanish.
                    auto p2 = must(providers::integration_provider::register_new(ctx, system_clock::instance().now(),
                                                                                 provider_spec(i % 2 ? key : key + "-second")));
                    return uow.providers().save(p2);
                });
                if (r) ++committed;
            }
        });
    while (started.load() < threads) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // from started to queued
    gate.set_value();
    holder.join();
    for (auto& th : pool) th.join();
    EXPECT_EQ(committed.load(), threads * each / 2);
    EXPECT_EQ(count_providers(*s, tenant("t0")) + count_providers(*s, tenant("t1")),
              static_cast<std::size_t>(committed.load()) * 2);
    // The store's own counters: every committed unit is counted once, and concurrent units shared
    // commits (one commit per unit queued would mean the writer never grouped them; the units
    // queued behind the holder share one at least). A refused unit is no unit but may end a
    // commit of its own, so on a busy machine commits can outnumber the committed units.
    auto stats = storage::sqlite_store_stats(*s);
    ASSERT_TRUE(stats);
    EXPECT_EQ(stats->units, static_cast<std::uint64_t>(committed.load()) + 1);  // and the holder's
    EXPECT_GE(stats->commits, 1u);
    EXPECT_LT(stats->commits, static_cast<std::uint64_t>(threads * each + 1));
    std::printf("[ grouped  ] %llu units in %llu commits\n", static_cast<unsigned long long>(stats->units),
                static_cast<unsigned long long>(stats->commits));
}

// One thread queues every unit without waiting: the units share commits, each still commits or
// rolls back alone, a throwing unit is reported as an error, and units queued when the store is
// destroyed are committed and reported before the destructor returns.
TEST(sqlite_store, async_units_from_one_thread_share_commits_and_are_each_reported_once) {
    temp_dir dir;
    auto path = dir.file("a.db");
    constexpr int units = 400;
    std::atomic<int> ok{0}, failed{0}, threw{0}, reported{0};
    auto ctx = tenant("t1");
    {
        auto s = must(storage::open_sqlite_store({.path = path}));
        for (int i = 0; i < units; ++i) {
            s->transact_async(
                ctx,
                [i, ctx](unit_of_work& uow) -> result<void> {
                    if (i == 7) throw std::runtime_error("boom");
                    auto key = "k" + std::to_string(i);
                    auto p1 = must(providers::integration_provider::register_new(ctx, system_clock::instance().now(), provider_spec(key)));
                    must(uow.providers().save(p1));
                    if (i % 3 == 0) return error{errc::conflict, "rolled back"};  // takes p1 with it
                    return {};
                },
                durability::immediate,
                [i, &ok, &failed, &threw, &reported](result<void> r) {
                    if (r)
                        ++ok;
                    else if (i == 7 && r.error() == errc::storage_failure)
                        ++threw;
                    else if (r.error() == errc::conflict)
                        ++failed;
                    ++reported;
                });
        }
        // The destructor drains the queue: every unit is reported before it returns.
    }
    EXPECT_EQ(reported.load(), units);
    EXPECT_EQ(threw.load(), 1);
    EXPECT_EQ(failed.load(), (units + 2) / 3);
    EXPECT_EQ(ok.load(), units - 1 - (units + 2) / 3);
    auto s = must(storage::open_sqlite_store({.path = path}));
    EXPECT_EQ(count_providers(*s, ctx), static_cast<std::size_t>(ok.load()));
}

TEST(sqlite_store, async_units_share_commits_while_no_caller_waits) {
    temp_dir dir;
    auto s = must(storage::open_sqlite_store({.path = dir.file("b.db")}));
    constexpr int units = 300;
    std::mutex m;
    std::condition_variable cv;
    int reported = 0;
    auto ctx = tenant("t1");
    for (int i = 0; i < units; ++i)
        s->transact_async(
            ctx,
            [i, ctx](unit_of_work& uow) -> result<void> {
                auto p = must(providers::integration_provider::register_new(ctx, system_clock::instance().now(),
                                                                            provider_spec("a" + std::to_string(i))));
                return uow.providers().save(p);
            },
            durability::immediate,
            [&](result<void> r) {
                EXPECT_TRUE(r);
                std::lock_guard lock(m);
                if (++reported == units) cv.notify_all();
            });
    {
        std::unique_lock lock(m);
        ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return reported == units; }));
    }
    EXPECT_EQ(count_providers(*s, ctx), static_cast<std::size_t>(units));
    auto stats = storage::sqlite_store_stats(*s);
    ASSERT_TRUE(stats);
    EXPECT_EQ(stats->units, static_cast<std::uint64_t>(units));
    EXPECT_LT(stats->commits, stats->units);  // one caller thread, yet the units were grouped
}

// Units made with `transact_async_checks_first` share one rollback point per stretch of them in a
// group commit. The writer is held by a first unit while the others queue, so they all land in
// one batch: a checks-first unit failing before its first write fails alone; one failing after a
// write (by an error or by throwing) commits nothing of itself and takes the earlier units of its
// stretch with it, told so; units made with `transact_async`, and the stretches before and after,
// commit.
TEST(sqlite_store, a_checks_first_unit_failing_after_a_write_commits_none_of_it_and_only_its_stretch_is_rolled_back) {
    temp_dir dir;
    auto s = must(storage::open_sqlite_store({.path = dir.file("c.db")}));
    auto ctx = tenant("t1");
    std::promise<void> held, go;
    auto released = go.get_future().share();
    s->transact_async(
        ctx,
        [&held, released](unit_of_work&) -> result<void> {
            held.set_value();
            released.wait();
            return {};
        },
        durability::deferred, [](result<void> r) { EXPECT_TRUE(r); });
    held.get_future().wait();

    enum class then { succeed, fail_first, fail_after_write, throw_after_write };
    struct unit {
        std::string key;
        bool checks_first;
        then how;
    };
    std::vector<unit> const units{
        {"g", true, then::succeed},           {"d", true, then::fail_first},  {"h", true, then::succeed},
        {"a", false, then::succeed},          {"b", true, then::succeed},     {"c", true, then::fail_after_write},
        {"f", true, then::succeed},           {"e", false, then::succeed},    {"t", true, then::throw_after_write},
        {"i", true, then::succeed},           {"x", false, then::fail_after_write},
    };
    std::vector<std::promise<result<void>>> outcomes(units.size());
    for (std::size_t n = 0; n < units.size(); ++n) {
        auto fn = [u = units[n], ctx](unit_of_work& uow) -> result<void> {
            if (u.how == then::fail_first) return error{errc::invalid_argument, "refused before writing"};
            auto p = must(providers::integration_provider::register_new(ctx, system_clock::instance().now(), provider_spec(u.key)));
            if (auto r = uow.providers().save(p); !r) return r;
            if (u.how == then::throw_after_write) throw std::runtime_error("boom");
            if (u.how == then::fail_after_write) return error{errc::conflict, "refused after writing"};
            return {};
        };
        auto done = [&outcomes, n](result<void> r) { outcomes[n].set_value(std::move(r)); };
        if (units[n].checks_first)
            s->transact_async_checks_first(ctx, std::move(fn), durability::immediate, std::move(done));
        else
            s->transact_async(ctx, std::move(fn), durability::immediate, std::move(done));
    }
    go.set_value();

    std::map<std::string, result<void>> told;
    for (std::size_t n = 0; n < units.size(); ++n) told.emplace(units[n].key, outcomes[n].get_future().get());
    auto stats = storage::sqlite_store_stats(*s);
    ASSERT_TRUE(stats);
    EXPECT_EQ(stats->commits, 2u) << "the units did not share one batch: the test proves nothing";
    std::set<std::string> stored;
    must(s->read(ctx, [&](unit_of_work& uow) -> result<void> {
        for (auto const& p : must(uow.providers().list({.limit = 100})).items) stored.insert(p.data().key);
        return {};
    }));

    EXPECT_EQ(stored, (std::set<std::string>{"g", "h", "a", "f", "e", "i"}));
    for (auto const* key : {"g", "h", "a", "f", "e", "i"}) EXPECT_TRUE(told.at(key)) << key << ": " << told.at(key).error().detail();
    EXPECT_EQ(told.at("d").error(), errc::invalid_argument);  // failed alone: g and h of its stretch committed
    EXPECT_EQ(told.at("c").error(), errc::conflict);
    EXPECT_EQ(told.at("t").error(), errc::storage_failure);
    EXPECT_EQ(told.at("x").error(), errc::conflict);  // a `transact_async` unit rolls back alone
    ASSERT_FALSE(told.at("b"));  // it succeeded, then was rolled back with c: it must not be told it committed
    EXPECT_EQ(told.at("b").error(), errc::storage_failure);
    EXPECT_NE(told.at("b").error().detail().find("run it again"), std::string::npos) << told.at("b").error().detail();
    EXPECT_EQ(told.at("b").error().detail().find("refused after writing"), std::string::npos)
        << "another unit's error (maybe another tenant's) was told";
}

// Many callers, every unit checks-first, some refused before their first write: each refusal
// fails alone, every other unit commits, and nothing else is lost.
TEST(sqlite_store, checks_first_units_refused_before_writing_fail_alone_under_load) {
    temp_dir dir;
    auto s = must(storage::open_sqlite_store({.path = dir.file("l.db")}));
    auto ctx = tenant("t1");
    constexpr int units = 600;
    std::mutex m;
    std::condition_variable cv;
    int reported = 0, ok = 0, refused = 0;
    for (int i = 0; i < units; ++i)
        s->transact_async_checks_first(
            ctx,
            [i, ctx](unit_of_work& uow) -> result<void> {
                if (i % 5 == 0) return error{errc::already_exists, "refused before writing"};
                auto p = must(providers::integration_provider::register_new(ctx, system_clock::instance().now(),
                                                                            provider_spec("l" + std::to_string(i))));
                return uow.providers().save(p);
            },
            durability::immediate,
            [&, i](result<void> r) {
                std::lock_guard lock(m);
                if (r) ++ok;
                else if (i % 5 == 0 && r.error() == errc::already_exists) ++refused;
                if (++reported == units) cv.notify_all();
            });
    {
        std::unique_lock lock(m);
        cv.wait(lock, [&] { return reported == units; });
    }
    EXPECT_EQ(refused, units / 5);
    EXPECT_EQ(ok, units - units / 5);
    EXPECT_EQ(count_providers(*s, ctx), static_cast<std::size_t>(ok));
    auto stats = storage::sqlite_store_stats(*s);
    ASSERT_TRUE(stats);
    EXPECT_EQ(stats->units, static_cast<std::uint64_t>(ok));
    EXPECT_LT(stats->commits, stats->units);
}

TEST(sqlite_store, stats_count_one_commit_per_unit_without_group_commit_and_none_for_another_store) {
    temp_dir dir;
    auto s = must(storage::open_sqlite_store({.path = dir.file("g.db"), .group_commit = false}));
    auto ctx = tenant("t1");
    for (int i = 0; i < 3; ++i)
        must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto p = must(providers::integration_provider::register_new(ctx, system_clock::instance().now(),
                                                                        provider_spec("s" + std::to_string(i))));
            return uow.providers().save(p);
        }));
    auto stats = storage::sqlite_store_stats(*s);
    ASSERT_TRUE(stats);
    EXPECT_EQ(stats->units, 3u);
    EXPECT_EQ(stats->commits, 3u);
    ASSERT_FALSE(s->transact(ctx, [](unit_of_work&) -> result<void> { return error{errc::conflict, "rolled back"}; }));
    EXPECT_EQ(storage::sqlite_store_stats(*s)->units, 3u);  // a unit rolled back is not counted

    struct other_store final : storage::store {
        result<void> transact(request_context const&, work, durability) override { return {}; }
        void transact_async(request_context const&, work, durability, committed done) override { done({}); }
        result<void> read(request_context const&, work) override { return {}; }
        result<std::vector<std::string>> tenants() override { return std::vector<std::string>{}; }
        result<std::vector<storage::outbox_record>> pending_events(std::size_t) override {
            return std::vector<storage::outbox_record>{};
        }
        result<void> mark_published(std::span<std::int64_t const>, time_point) override { return {}; }
        result<storage::outbox_trim> remove_published(time_point, std::size_t, std::int64_t) override { return storage::outbox_trim{}; }
        result<std::int64_t> count_failed_publication(std::int64_t, std::chrono::milliseconds) override { return 0; }
        result<void> park_dead(std::int64_t, time_point, request_context const&, work const&) override { return {}; }
        storage::api_key_repository& api_keys() override { return keys; }
        result<storage::delivery_claim> claim_deliveries(time_point, std::string const&, time_point, std::size_t,
                                                         storage::delivery_share const&) override {
            return storage::delivery_claim{};
        }
        result<std::optional<time_point>> oldest_due_delivery() override { return std::optional<time_point>{}; }
        result<std::optional<storage::inbound_endpoint_record>> find_inbound_endpoint(std::string const&) override {
            return std::optional<storage::inbound_endpoint_record>{};
        }
        struct no_keys final : storage::api_key_repository {
            result<void> add(storage::api_key_record const&) override { return {}; }
            result<std::optional<storage::api_key_record>> find(std::string const&) override { return std::nullopt; }
        } keys;
    } other;
    EXPECT_FALSE(storage::sqlite_store_stats(other));
}

TEST(sqlite_store, deferred_commits_are_visible_at_once_and_survive_the_process_being_killed) {
    temp_dir dir;
    auto ctx = tenant("t1");
    { auto s = open_sqlite(dir, nullptr); }
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        auto s = storage::open_sqlite_store({.path = dir.file("integration.db"), .flush_interval = std::chrono::hours(1)});
        if (!s) ::_exit(2);
        for (int i = 0; i < 40; ++i) {
            auto r = (*s)->transact(
                ctx,
                [&](unit_of_work& uow) -> result<void> {
                    auto p = providers::integration_provider::register_new(ctx, system_clock::instance().now(),
                                                                           provider_spec("d" + std::to_string(i)));
                    if (!p) return p.error();
                    return uow.providers().save(*p);
                },
                durability::deferred);
            if (!r) ::_exit(3);
        }
        ::_exit(0);  // killed in effect: no destructor, no flush, the hour-long interval never passes
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    auto s = open_sqlite(dir, nullptr);
    EXPECT_EQ(count_providers(*s, ctx), 40u);
}

TEST(sqlite_store, a_write_failing_mid_transaction_rolls_the_unit_back_with_a_clear_error_and_keeps_every_commit) {
    // A child process whose files may not grow past a limit (RLIMIT_FSIZE: the kernel fails the
    // write with EFBIG, as a full disk fails it with ENOSPC) commits units until one fails.
    temp_dir dir;
    auto ctx = tenant("t1");
    { auto s = open_sqlite(dir, nullptr); }
    std::string const name(200, 'x');
    constexpr std::size_t per_unit = 32;  // about 16 KiB a unit: one failed unit leaves a partial one if anything
    auto unit = [&](std::string const& key) {
        return [&, key](unit_of_work& uow) -> result<void> {
            for (std::size_t i = 0; i < per_unit; ++i) {
                auto spec = provider_spec(key + "-" + std::to_string(i));
                spec.display_name = name;
                auto p = providers::integration_provider::register_new(ctx, system_clock::instance().now(), spec);
                if (!p) return p.error();
                if (auto r = uow.providers().save(*p); !r) return r;
            }
            return {};
        };
    };
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        std::signal(SIGXFSZ, SIG_IGN);
        auto s = storage::open_sqlite_store({.path = dir.file("integration.db")});
        if (!s) ::_exit(250);
        for (int i = 0; i < 10; ++i)
            if (auto r = (*s)->transact(ctx, unit("before" + std::to_string(i))); !r) {
                std::fprintf(stderr, "before the limit: %s\n", r.error().detail().c_str());
                ::_exit(251);
            }
        rlimit limit{256 * 1024 + static_cast<rlim_t>(std::filesystem::file_size(dir.file("integration.db-wal"))), RLIM_INFINITY};
        limit.rlim_cur = std::max<rlim_t>(limit.rlim_cur, std::filesystem::file_size(dir.file("integration.db")) + 256 * 1024);
        ::setrlimit(RLIMIT_FSIZE, &limit);
        for (int i = 0; i < 200; ++i) {
            auto r = (*s)->transact(ctx, unit("after" + std::to_string(i)));
            if (r) continue;
            bool clear = r.error() == errc::storage_failure &&
                         (r.error().detail().find("I/O") != std::string::npos || r.error().detail().find("full") != std::string::npos);
            std::fprintf(stderr, "unit %d failed: %s\n", i, r.error().detail().c_str());
            ::_exit(clear ? i : 252);  // i units committed after the limit
        }
        ::_exit(253);  // the limit never bit
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_TRUE(WIFEXITED(status));
    int committed_after = WEXITSTATUS(status);
    ASSERT_LT(committed_after, 200) << "exit " << committed_after << ": 250 open, 251 commit before the limit, 252 unclear error, 253 no failure";

    auto s = open_sqlite(dir, nullptr);
    EXPECT_EQ(count_providers(*s, ctx), per_unit * (10u + static_cast<std::size_t>(committed_after)));
    EXPECT_EQ(query_rows(dir.file("integration.db"), "PRAGMA integrity_check"), std::vector<std::string>{"ok"});
    // The store keeps working once writes fit again.
    must(s->transact(ctx, unit("later")));
}

TEST(sqlite_store, immediate_and_deferred_units_mix_in_one_group) {
    temp_dir dir;
    auto s = open_sqlite(dir, nullptr);
    constexpr int threads = 8, each = 25;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            auto ctx = tenant("t1");
            for (int i = 0; i < each; ++i)
                must(s->transact(
                    ctx,
                    [&](unit_of_work& uow) -> result<void> {
                        auto p = must(providers::integration_provider::register_new(
                            ctx, system_clock::instance().now(), provider_spec("m" + std::to_string(t) + "-" + std::to_string(i))));
                        return uow.providers().save(p);
                    },
                    t % 2 ? durability::deferred : durability::immediate));
        });
    for (auto& th : pool) th.join();
    EXPECT_EQ(count_providers(*s, tenant("t1")), static_cast<std::size_t>(threads * each));
}


/** Publishes whole only the events of one aggregate; every other event is taken as its columns. */
class choosy_publisher final : public events::event_publisher {
public:
    explicit choosy_publisher(std::string aggregate_id) : wanted_(std::move(aggregate_id)) {}
    result<void> publish(events::event_envelope const& e) override {
        seen.push_back(e);
        return {};
    }
    bool wants(events::event_envelope const& head) override { return head.aggregate_id == wanted_; }
    std::vector<events::event_envelope> seen;

private:
    std::string wanted_;
};

// The relay reads an outbox row's columns first and parses its stored envelope only when a
// listener wants it whole: an unwanted row is published from its columns (even one whose JSON
// no longer parses), and a corrupt wanted row fails alone, and is parked at once.
TEST(sqlite_store, the_relay_parses_only_the_events_a_listener_wants_whole) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto s = open_sqlite(dir, nullptr);
    auto ctx = tenant("t1");
    std::vector<std::string> ids;
    for (auto key : {"acme", "globex", "initech"})
        must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto p = must(providers::integration_provider::register_new(ctx, system_clock::instance().now(), provider_spec(key)));
            ids.push_back(p.id());
            return uow.providers().save(p);
        }));
    // The first two rows' stored envelopes are corrupt; the third is intact.
    exec_sql(path, "UPDATE outbox SET envelope = 'not json' WHERE aggregate_id IN ('" + ids[0] + "', '" + ids[1] + "')");

    choosy_publisher pub(ids[1]);
    events::outbox_relay relay(*s, pub, {.batch = 10});
    // The first and the third, from their columns; the corrupt wanted row fails the same way
    // every time, so it is parked at its first failure (the next pass publishes the failure's event).
    EXPECT_EQ(must(relay.run_once()), 2u);
    EXPECT_EQ(relay.stats().dead, 1u);
    EXPECT_EQ(relay.stats().failed_attempts, 1u);
    EXPECT_EQ(must(relay.run_once()), 1u);
    EXPECT_EQ(must(relay.run_once()), 0u);
    EXPECT_EQ(relay.stats().failed_attempts, 1u);
    ASSERT_GE(pub.seen.size(), 1u);
    auto const& first = pub.seen.front();
    EXPECT_EQ(first.aggregate_id, ids[0]);
    EXPECT_EQ(first.aggregate_type, "IntegrationProvider");
    EXPECT_EQ(first.event_type, "IntegrationProviderRegistered");
    EXPECT_EQ(first.tenant_id, "t1");
    EXPECT_EQ(first.aggregate_version, 1);
    EXPECT_FALSE(first.event_id.empty());
    EXPECT_TRUE(first.data.empty()) << "an unwanted event is published from its columns";
    auto published = query_rows(path, "SELECT aggregate_id FROM outbox WHERE published_at IS NOT NULL AND "
                                      "aggregate_type = 'IntegrationProvider' ORDER BY sequence");
    EXPECT_EQ(published, (std::vector<std::string>{ids[0], ids[2]}));
}

// A page's size is the caller's (1-500 on the host's routes): it is bound, never written into the
// SQL text, since every text is kept prepared for the connection's life. Written in, each size
// asked for kept another statement on the connection for good (a tenant looping over sizes
// grew the process without bound).
TEST(sqlite_store, page_sizes_share_one_prepared_statement) {
    temp_dir dir;
    auto s = open_sqlite(dir, nullptr);
    auto ctx = tenant("t1");
    auto list = [&](std::size_t limit) {
        must(s->read(ctx, [&](unit_of_work& uow) -> result<void> {
            must(uow.deliveries().list({.direction = webhooks::delivery_direction::outbound}, {.limit = limit}));
            must(uow.providers().list({.limit = limit}));
            return {};
        }));
    };
    for (std::size_t limit = 1; limit <= 20; ++limit) list(limit);  // every reader connection has prepared them
    auto const before = sqlite3_memory_used();
    for (std::size_t limit = 21; limit <= 500; ++limit) list(limit);
    auto const grown = sqlite3_memory_used() - before;
    EXPECT_LT(grown, 256 * 1024) << "SQLite's memory grew by " << grown << " bytes over 480 page sizes";
}

// A parked event and the failure that tells of it commit together: when the failure cannot be
// recorded, the event is not parked either (it was: a dead event nobody would ever hear of), and
// the next try parks it with its failure.
TEST(sqlite_store, the_relay_parks_an_event_only_with_its_failure) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto s = open_sqlite(dir, nullptr);
    auto ctx = tenant("t1");
    auto id = registered_provider(*s, ctx, "acme");
    exec_sql(path, "UPDATE outbox SET envelope = 'not json' WHERE aggregate_id = '" + id + "'");  // poison: parked at once
    exec_sql(path, "CREATE TRIGGER no_failures BEFORE INSERT ON failures BEGIN SELECT RAISE(ABORT, 'refused'); END;");
    choosy_publisher pub(id);
    events::outbox_relay relay(*s, pub, {.batch = 10, .retry_base = std::chrono::milliseconds(1)});
    EXPECT_FALSE(relay.run_once());
    EXPECT_EQ(relay.stats().dead, 0u);
    auto const dead = "SELECT count(*) FROM outbox WHERE dead_at IS NOT NULL";
    EXPECT_EQ(query_rows(path, dead), (std::vector<std::string>{"0"})) << "parked without its failure";
    EXPECT_EQ(query_rows(path, "SELECT count(*) FROM failures"), (std::vector<std::string>{"0"}));

    exec_sql(path, "DROP TRIGGER no_failures;");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // past the held-back try
    EXPECT_TRUE(relay.run_once());
    EXPECT_EQ(relay.stats().dead, 1u);
    EXPECT_EQ(query_rows(path, dead), (std::vector<std::string>{"1"}));
    EXPECT_EQ(query_rows(path, "SELECT event_id FROM failures"), (std::vector<std::string>{
                                                                       query_rows(path, "SELECT event_id FROM outbox WHERE aggregate_id = ?", {id}).at(0)}));
}

}  // namespace
}  // namespace integration::testing

namespace integration::testing {
namespace {

// Migration 6: outbox rows written before it are pending with no failed publication, failures
// keep their rows (with no event id), and the new tables start empty.
TEST(sqlite_store, a_version_4_database_keeps_its_outbox_rows_pending) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto ctx = tenant("t1");
    {
        auto s = open_sqlite(dir, nullptr);
        must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto p = must(providers::integration_provider::register_new(ctx, system_clock::instance().now(), provider_spec()));
            return uow.providers().save(p);
        }));
    }
    back_to_schema_4(path);
    auto s = open_sqlite(dir, nullptr);
    auto pending = must(s->pending_events(10));
    ASSERT_EQ(pending.size(), 1u);
    EXPECT_EQ(pending[0].attempts, 0);
    EXPECT_EQ(must(s->count_failed_publication(pending[0].sequence, std::chrono::milliseconds(0))), 1);
    EXPECT_EQ(must(s->pending_events(10)).at(0).attempts, 1);
    EXPECT_FALSE(must(s->api_keys().find("nothing")));
}

TEST(sqlite_store, a_version_9_database_keeps_its_runs_and_can_then_keep_their_bodies) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto ctx = tenant("t1");
    std::string run_id;
    {
        auto s = open_sqlite(dir, nullptr);
        must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto now = system_clock::instance().now();
            auto p = active_provider(ctx, now);
            auto conn = active_connection(ctx, now, p);
            auto run = must(runs::integration_run::create(ctx, now, conn, "sms.send"));
            must(run.start(conn, false, now));
            run_id = run.id();
            return uow.runs().save(run);
        }));
    }
    back_to_schema_9(path);
    auto s = open_sqlite(dir, nullptr);
    must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
        EXPECT_EQ(must(uow.runs().find(run_id)).id(), run_id);
        must(uow.runs().put_body(run_id, storage::run_body::request, "{}"));
        EXPECT_EQ(must(uow.runs().body(run_id, storage::run_body::request)), "{}");
        return {};
    }));
}

// Migration 12: the outbox loses AUTOINCREMENT and its UNIQUE index on event_id, and keeps its
// rows as they were: published, dead and pending, with their sequences. The pending ones are
// still published in order, and a row written after the upgrade comes after them.
TEST(sqlite_store, a_version_11_database_keeps_its_outbox_rows_and_publishes_the_pending_ones_in_order) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto ctx = tenant("t1");
    auto now = system_clock::instance().now();
    // A provider registered and deprecated: two outbox rows of one aggregate.
    auto provider = [&](storage::store& s, std::string const& key) {
        std::string id;
        must(s.transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto p = must(providers::integration_provider::register_new(ctx, now, provider_spec(key)));
            must(p.deprecate("replaced"));
            id = p.id();
            return uow.providers().save(p);
        }));
        return id;
    };
    std::string published, dead, pending;
    {
        auto s = open_sqlite(dir, nullptr);
        published = provider(*s, "p1");
        dead = provider(*s, "p2");
        pending = provider(*s, "p3");
        auto rows = must(s->pending_events(10));
        ASSERT_EQ(rows.size(), 6u);
        std::vector<std::int64_t> first{rows[0].sequence, rows[1].sequence};
        must(s->mark_published(first, now));
        EXPECT_EQ(must(s->count_failed_publication(rows[2].sequence, std::chrono::milliseconds(0))), 1);
        must(s->park_dead(rows[2].sequence, now));  // its aggregate's second row waits behind it
    }
    back_to_schema_11(path);
    std::string const all_rows =
        "SELECT sequence, event_id, tenant_id, aggregate_type, aggregate_id, aggregate_version, event_type, occurred_at, "
        "envelope, published_at, attempts, dead_at, body_from_payload FROM outbox ORDER BY sequence";
    auto const before = query_rows(path, all_rows);
    ASSERT_EQ(before.size(), 6u);
    ASSERT_EQ(query_rows(path, "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'"), std::vector<std::string>{"6"});

    auto s = open_sqlite(dir, nullptr);
    EXPECT_EQ(query_rows(path, all_rows), before);
    EXPECT_EQ(query_rows(path, "SELECT instr(sql, 'AUTOINCREMENT') FROM sqlite_master WHERE name = 'outbox'"),
              std::vector<std::string>{"0"});
    EXPECT_EQ(query_rows(path, "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outbox' ORDER BY name"),
              (std::vector<std::string>{"outbox_dead", "outbox_pending", "outbox_waiting"}));
    EXPECT_TRUE(query_rows(path, "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").empty());

    auto later = provider(*s, "p4");
    auto rows = must(s->pending_events(10));
    std::vector<std::string> order;
    for (auto const& r : rows) order.push_back(r.envelope.aggregate_id);
    EXPECT_EQ(order, (std::vector<std::string>{pending, pending, later, later}));
    ASSERT_EQ(rows.size(), 4u);
    EXPECT_EQ(rows[2].sequence, 7);  // after every row written before the upgrade
    EXPECT_LT(rows[0].sequence, rows[1].sequence);
    std::vector<std::int64_t> sequences;
    for (auto const& r : rows) sequences.push_back(r.sequence);
    must(s->mark_published(sequences, now));
    EXPECT_TRUE(must(s->pending_events(10)).empty());
    EXPECT_EQ(query_rows(path, "SELECT aggregate_id FROM outbox WHERE dead_at IS NOT NULL OR published_at IS NULL"),
              (std::vector<std::string>{dead, dead}));
    EXPECT_EQ(query_rows(path, "SELECT COUNT(*) FROM outbox WHERE aggregate_id = ? AND published_at IS NOT NULL",
                         {published}),
              std::vector<std::string>{"2"});
}

// Migration 13: run bodies move from their own table into their run's row, byte for byte (an
// empty body stays empty, a missing one missing), and are read, purged by age and deleted with
// their run as before; the table is gone.
TEST(sqlite_store, a_version_12_database_keeps_its_run_bodies_in_their_runs) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto ctx = tenant("t1");
    auto now = system_clock::instance().now();
    std::string const request = "{\"to\":\"+15550100\"}", binary("bin\0ary", 7);
    std::vector<std::string> ids;
    {
        auto s = open_sqlite(dir, nullptr);
        must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto p = active_provider(ctx, now);
            auto conn = active_connection(ctx, now, p);
            if (auto r = uow.providers().save(p); !r) return r;
            if (auto r = uow.connections().save(conn); !r) return r;
            // Both bodies, the request alone, an empty response, none.
            std::vector<std::pair<std::optional<std::string_view>, std::optional<std::string_view>>> bodies{
                {request, binary}, {request, std::nullopt}, {std::nullopt, std::string_view()}, {std::nullopt, std::nullopt}};
            for (auto const& [req, resp] : bodies) {
                auto run = must(runs::integration_run::create(ctx, now, conn, "sms.send"));
                must(run.start(conn, false, now));
                must(run.record_attempt({1, runs::attempt_status::succeeded, std::nullopt, 200, 3, now}));
                must(run.complete(now, std::nullopt, std::nullopt));
                auto prepared = storage::prepare_run(std::move(run), ctx, now, s->event_source());
                prepared.request_body = req;
                prepared.response_body = resp;
                ids.push_back(prepared.run.id());
                if (auto r = uow.runs().save_prepared(prepared); !r) return r;
            }
            return {};
        }));
    }
    back_to_schema_12(path);
    ASSERT_EQ(query_rows(path, "SELECT COUNT(*) FROM run_bodies"), std::vector<std::string>{"4"});

    auto s = open_sqlite(dir, nullptr);
    EXPECT_EQ(query_rows(path, "PRAGMA user_version"), std::vector<std::string>{std::to_string(storage::sqlite_schema_version)});
    EXPECT_TRUE(query_rows(path, "SELECT name FROM sqlite_master WHERE name = 'run_bodies'").empty());
    auto body = [&](request_context const& c, std::string const& id, storage::run_body part) {
        return storage::read_for(*s, c, [&](unit_of_work& uow) { return uow.runs().body(id, part); });
    };
    using storage::run_body;
    EXPECT_EQ(must(body(ctx, ids[0], run_body::request)), request);
    EXPECT_EQ(must(body(ctx, ids[0], run_body::response)), binary);
    EXPECT_EQ(must(body(ctx, ids[1], run_body::request)), request);
    EXPECT_EQ(body(ctx, ids[1], run_body::response).error(), errc::not_found);
    EXPECT_EQ(body(ctx, ids[2], run_body::request).error(), errc::not_found);
    EXPECT_EQ(must(body(ctx, ids[2], run_body::response)), "");
    EXPECT_EQ(body(ctx, ids[3], run_body::request).error(), errc::not_found);
    EXPECT_EQ(body(tenant("t2"), ids[0], run_body::request).error(), errc::not_found);

    // Deleted with their run; the rest go by age: bodies older than the cut, not younger ones.
    must(s->transact(ctx, [&](unit_of_work& uow) { return uow.runs().remove(ids[1]); }));
    EXPECT_EQ(body(ctx, ids[1], run_body::request).error(), errc::not_found);
    auto purge = [&](time_point before) {
        return storage::transact_for(*s, ctx, [&](unit_of_work& uow) { return uow.runs().purge_bodies(before, 100); });
    };
    EXPECT_EQ(must(purge(now - std::chrono::hours(1))), 0u);
    EXPECT_EQ(must(purge(now + std::chrono::hours(1))), 2u);  // the two runs left that hold a body
    EXPECT_EQ(body(ctx, ids[0], run_body::request).error(), errc::not_found);
    EXPECT_EQ(body(ctx, ids[2], run_body::response).error(), errc::not_found);
    EXPECT_EQ(must(purge(now + std::chrono::hours(1))), 0u);
}

// Migration 14: runs keyed by (tenant_id, run_id); only runs that are not Completed in the
// status index. A tenant's runs list in key order without sorting them all, and each status
// filter finds its runs.
TEST(sqlite_store, a_version_13_database_lists_its_runs_in_key_order_and_by_status) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto a = tenant("t1"), b = tenant("t2");
    auto now = system_clock::instance().now();
    std::vector<std::string> completed, running, failed, other;
    int providers = 0;
    std::map<std::string, std::string> connection_of;
    auto record = [&](storage::store& s, request_context const& ctx, runs::run_status status, std::vector<std::string>& ids) {
        must(s.transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto p = active_provider(ctx, now, "acme-" + std::to_string(++providers));
            auto conn = active_connection(ctx, now, p);
            if (auto r = uow.providers().save(p); !r) return r;
            if (auto r = uow.connections().save(conn); !r) return r;
            auto run = must(runs::integration_run::create(ctx, now, conn, "sms.send"));
            must(run.start(conn, false, now));
            if (status != runs::run_status::running) {
                must(run.record_attempt({1, runs::attempt_status::succeeded, std::nullopt, 200, 3, now}));
                if (status == runs::run_status::completed) must(run.complete(now, std::nullopt, std::nullopt));
                else must(run.fail(now, {failures::failure_category::poison, "bad_request", "the vendor refused it",
                                          failures::next_action::dead_letter, std::nullopt}, std::nullopt));
            }
            ids.push_back(run.id());
            connection_of[run.id()] = conn.id();
            return uow.runs().save(run);
        }));
    };
    {
        auto s = open_sqlite(dir, nullptr);
        for (int i = 0; i < 3; ++i) record(*s, a, runs::run_status::completed, completed);
        record(*s, a, runs::run_status::running, running);
        record(*s, a, runs::run_status::failed, failed);
        record(*s, b, runs::run_status::completed, other);
    }
    back_to_schema_13(path);
    ASSERT_EQ(query_rows(path, "SELECT COUNT(*) FROM runs INDEXED BY runs_by_status"), std::vector<std::string>{"6"});

    auto s = open_sqlite(dir, nullptr);
    EXPECT_EQ(query_rows(path, "PRAGMA user_version"), std::vector<std::string>{std::to_string(storage::sqlite_schema_version)});
    auto ids = [&](request_context const& ctx, storage::run_query q, std::size_t limit = 100) {
        return listed_ids(*s, ctx, limit, [&](unit_of_work& uow, storage::page_request const& p) { return uow.runs().list(q, p); });
    };
    completed = sorted(completed);
    auto all = completed;
    all.insert(all.end(), {running[0], failed[0]});
    all = sorted(all);
    EXPECT_EQ(ids(a, {}), all);
    EXPECT_EQ(ids(a, {}, 2), all);  // page by page
    EXPECT_EQ(ids(a, {.status = runs::run_status::running}), running);
    EXPECT_EQ(ids(a, {.status = runs::run_status::failed}), failed);
    EXPECT_EQ(ids(a, {.status = runs::run_status::completed}), completed);
    EXPECT_EQ(ids(b, {}), other);
    EXPECT_EQ(ids(a, {.connection_id = connection_of[running[0]]}), running);
    EXPECT_EQ(ids(a, {.connection_id = connection_of[failed[0]], .status = runs::run_status::failed}), failed);
    EXPECT_TRUE(ids(a, {.connection_id = connection_of[failed[0]], .status = runs::run_status::completed}).empty());
    EXPECT_TRUE(ids(b, {.connection_id = connection_of[completed[0]]}).empty());
    EXPECT_EQ(must(storage::read_for(*s, a, [&](unit_of_work& uow) { return uow.runs().find(running[0]); })).status(),
              runs::run_status::running);
    EXPECT_EQ(storage::read_for(*s, b, [&](unit_of_work& uow) { return uow.runs().find(running[0]); }).error(), errc::not_found);

    // Completed runs stay out of the status index; a page of a tenant's or a connection's runs
    // reads them in key order instead of sorting every run of the tenant or connection.
    EXPECT_EQ(query_rows(path, "SELECT COUNT(*) FROM runs INDEXED BY runs_unfinished WHERE status <> 'Completed'"),
              std::vector<std::string>{"2"});
    auto plan = [&](std::string const& sql) { return query_plan(path, sql); };
    auto page = plan("SELECT run_id FROM runs WHERE tenant_id = 't1' AND run_id > '' ORDER BY run_id LIMIT 51");
    EXPECT_EQ(page.find("TEMP B-TREE"), std::string::npos) << page;
    auto by_connection = plan("SELECT run_id FROM runs WHERE tenant_id = 't1' AND connection_id = 'c' AND run_id > '' "
                              "ORDER BY run_id LIMIT 51");
    EXPECT_EQ(by_connection.find("TEMP B-TREE"), std::string::npos) << by_connection;
    auto unfinished = plan("SELECT run_id FROM runs WHERE tenant_id = 't1' AND (status = 'Running' AND status <> 'Completed') "
                           "ORDER BY run_id LIMIT 51");
    EXPECT_NE(unfinished.find("runs_unfinished"), std::string::npos) << unfinished;
}

/** A new, accepted inbound delivery of `ctx` with its payload, ready for `add_inbound`; its
 *  canonical event's body is kept once, as the payload, when `once`. */
storage::prepared_inbound accepted_inbound(request_context const& ctx, time_point now, std::string const& vendor_id,
                                           std::string const& raw, bool once, std::string const& connection = "conn-1") {
    auto d = must(webhooks::webhook_delivery::inbound(ctx, now, connection, "prov-1", vendor_id, "github.push",
                                                      std::nullopt, std::string("hash")));
    must(d.keep_payload(storage::stored_payload_ref(ctx.tenant_id, d.id())));
    must(d.accept({.signature_valid = true, .tenant_resolved = true}, now,
                  *webhooks::parse_body(raw, webhooks::body_format::json)));
    return storage::prepare_inbound(std::move(d), ctx, now, "integration", raw,
                                    once ? std::optional(webhooks::body_format::json) : std::nullopt);
}

void add_inbound(storage::store& s, request_context const& ctx, storage::prepared_inbound& p) {
    must(s.transact(ctx, [&](unit_of_work& uow) -> result<void> {
        auto r = uow.deliveries().add_inbound(p);
        if (!r) return r.error();
        return {};
    }));
}

// Schema 18: an outbox row's text leaves out its event's identity (id, type, time, tenant,
// aggregate and version), which the row's columns hold; read back, the event is whole, and a row
// written before, with the identity in its text too, reads the same.
TEST(sqlite_store, an_outbox_row_keeps_its_events_identity_in_its_columns_only) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto s = open_sqlite(dir, nullptr);
    auto ctx = tenant("t1");
    auto id = registered_provider(*s, ctx, "acme");
    auto stored = query_rows(path, "SELECT envelope FROM outbox");
    ASSERT_EQ(stored.size(), 1u);
    for (auto key : {"eventId", "eventType", "occurredAt", "tenantId", "aggregateType", "aggregateId", "aggregateVersion"})
        EXPECT_EQ(stored[0].find(std::string("\"") + key + "\""), std::string::npos) << key << " in " << stored[0];
    EXPECT_NE(stored[0].find("\"source\""), std::string::npos) << stored[0];

    auto pending = must(s->pending_events(10));
    ASSERT_EQ(pending.size(), 1u);
    auto const whole = pending[0].envelope;
    EXPECT_EQ(whole.event_id, query_rows(path, "SELECT event_id FROM outbox")[0]);
    EXPECT_EQ(whole.event_type, "IntegrationProviderRegistered");
    EXPECT_EQ(whole.tenant_id, "t1");
    EXPECT_EQ(whole.aggregate_type, "IntegrationProvider");
    EXPECT_EQ(whole.aggregate_id, id);
    EXPECT_EQ(whole.aggregate_version, 1);
    EXPECT_EQ(to_unix_ms(whole.occurred_at), std::stoll(query_rows(path, "SELECT occurred_at FROM outbox")[0]));
    EXPECT_FALSE(whole.data.empty());
    auto const full = events::serialize_envelope(whole);
    EXPECT_GT(full.size(), stored[0].size() + 150) << "the identity is written once";

    // As a row of schema 17 stored it: the whole envelope in its text.
    std::string literal;
    for (char c : full) literal += c == '\'' ? std::string("''") : std::string(1, c);
    exec_sql(path, "UPDATE outbox SET envelope = '" + literal + "'");
    EXPECT_EQ(events::serialize_envelope(must(s->pending_events(10)).at(0).envelope), full);
    auto rows = must(s->pending_event_rows(10));
    EXPECT_EQ(events::serialize_envelope(must(storage::parse_outbox_envelope(rows.at(0)))), full);
}

// An inbound event's body kept once, as its delivery's payload, is read back only for a listener
// that wants the event whole: one whose payload no longer reads fails that event alone, and
// holds nothing back when nobody wants it whole.
TEST(sqlite_store, an_inbound_body_that_no_longer_reads_fails_only_an_event_wanted_whole) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto s = open_sqlite(dir, nullptr);
    auto a = tenant("t1");
    auto now = system_clock::instance().now();
    auto good = accepted_inbound(a, now, "vendor-1", R"({"n":1})", true);
    auto bad = accepted_inbound(a, now, "vendor-2", R"({"n":2})", true);
    add_inbound(*s, a, good);
    add_inbound(*s, a, bad);
    exec_sql(path, "UPDATE deliveries SET payload = CAST('{{' AS BLOB) WHERE delivery_id = '" + bad.delivery.id() + "'");

    auto rows = must(s->pending_event_rows(100));
    ASSERT_EQ(rows.size(), 4u);
    EXPECT_EQ(rows[1].body_format, "json");
    EXPECT_EQ(rows[1].body, std::optional<std::string>(R"({"n":1})"));
    EXPECT_EQ(rows[3].body, std::optional<std::string>("{{"));
    auto whole = must(storage::parse_outbox_envelope(rows[1]));
    EXPECT_EQ(boost::json::serialize(whole.data.at("body")), R"({"n":1})");
    auto broken = storage::parse_outbox_envelope(rows[3]);
    ASSERT_FALSE(broken);
    EXPECT_EQ(broken.error(), errc::storage_failure);
    EXPECT_NE(broken.error().detail().find("no longer reads as json"), std::string::npos) << broken.error().detail();
    EXPECT_FALSE(s->pending_events(100)) << "read whole, the broken body fails the read";

    // Nobody wants an event whole: all four are published from their columns.
    {
        choosy_publisher pub("");
        events::outbox_relay relay(*s, pub, {.batch = 100});
        EXPECT_EQ(must(relay.run_once()), 4u);
        ASSERT_EQ(pub.seen.size(), 4u);
        EXPECT_EQ(pub.seen[1].event_type, "github.push");
        EXPECT_TRUE(pub.seen[1].data.empty()) << "published from its columns";
        EXPECT_EQ(relay.stats().failed_attempts, 0u);
    }
    // Wanted whole, a good body is put back, and a broken one fails alone, as a publication.
    auto wanted = accepted_inbound(a, now, "vendor-3", R"({"n":3})", true);
    add_inbound(*s, a, wanted);
    {
        choosy_publisher pub(wanted.delivery.id());
        events::outbox_relay relay(*s, pub, {.batch = 100});
        EXPECT_EQ(must(relay.run_once()), 2u);
        ASSERT_EQ(pub.seen.size(), 2u);
        EXPECT_EQ(boost::json::serialize(pub.seen[1].data.at("body")), R"({"n":3})");
    }
    auto bad_again = accepted_inbound(a, now, "vendor-4", R"({"n":4})", true);
    add_inbound(*s, a, bad_again);
    exec_sql(path, "UPDATE deliveries SET payload = CAST('{{' AS BLOB) WHERE delivery_id = '" + bad_again.delivery.id() + "'");
    choosy_publisher pub(bad_again.delivery.id());
    events::outbox_relay relay(*s, pub, {.batch = 100});
    EXPECT_EQ(must(relay.run_once()), 1u) << "its WebhookDelivered";
    EXPECT_EQ(relay.stats().failed_attempts, 1u);
    // A body that does not parse fails the same way every time: it is parked at once, and what
    // is left pending is the event of the failure recorded for it.
    EXPECT_EQ(relay.stats().dead, 1u);
    EXPECT_EQ(query_rows(path, "SELECT event_type || ':' || attempts FROM outbox WHERE dead_at IS NOT NULL"),
              std::vector<std::string>{"github.push:1"});
    auto left = must(s->pending_event_rows(100));
    ASSERT_EQ(left.size(), 1u);
    EXPECT_EQ(left[0].envelope.event_type, "IntegrationFailed");
}

// Migration 17: a page of a tenant's failures walks its key instead of sorting them all; the
// run and delivery filters still find theirs.
TEST(sqlite_store, a_version_16_database_lists_its_failures_in_key_order) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto a = tenant("t1"), b = tenant("t2");
    auto now = system_clock::instance().now();
    failures::classification const c{failures::failure_category::poison, "bad_request", "the vendor refused it",
                                     failures::next_action::dead_letter, std::nullopt};
    std::map<std::string, std::vector<std::string>> of;  // tenant/source id -> its failures' ids
    std::vector<std::string> all, theirs, resolved;
    auto record = [&](storage::store& s, request_context const& ctx, failures::failure_source source, std::string const& id,
                      bool resolve) {
        must(s.transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto f = must(failures::integration_failure::record(ctx, now, source, id, "prov-1", c));
            if (resolve) must(f.resolve(failures::source_outcome::succeeded, now));
            (ctx.tenant_id == "t1" ? all : theirs).push_back(f.id());
            if (resolve) resolved.push_back(f.id());
            of[ctx.tenant_id + "/" + id].push_back(f.id());
            return uow.failures().save(f);
        }));
    };
    {
        auto s = open_sqlite(dir, nullptr);
        record(*s, a, failures::failure_source::run, "run-1", false);
        record(*s, a, failures::failure_source::run, "run-1", true);
        record(*s, a, failures::failure_source::run, "run-2", false);
        record(*s, a, failures::failure_source::delivery, "dlv-1", false);
        record(*s, a, failures::failure_source::outbox_event, "evt-1", false);
        record(*s, b, failures::failure_source::run, "run-1", false);
    }
    back_to_schema_16(path);
    auto s = open_sqlite(dir, nullptr);
    EXPECT_EQ(query_rows(path, "PRAGMA user_version"), std::vector<std::string>{std::to_string(storage::sqlite_schema_version)});
    auto ids = [&](request_context const& ctx, storage::failure_query q) {
        return listed_ids(*s, ctx, 2, [&](unit_of_work& uow, storage::page_request const& p) { return uow.failures().list(q, p); });
    };
    EXPECT_EQ(ids(a, {}), sorted(all));
    EXPECT_EQ(ids(a, {.run_id = "run-1"}), sorted(of["t1/run-1"]));  // t2 has a run-1 too
    EXPECT_EQ(ids(a, {.run_id = "run-1", .unresolved_only = true}), std::vector<std::string>{of["t1/run-1"][0]});
    EXPECT_EQ(ids(a, {.delivery_id = "dlv-1"}), of["t1/dlv-1"]);
    auto unresolved = all;
    std::erase(unresolved, resolved[0]);
    EXPECT_EQ(ids(a, {.unresolved_only = true}), sorted(unresolved));
    EXPECT_EQ(ids(b, {}), theirs);

    EXPECT_EQ(query_rows(path, "SELECT COUNT(*) FROM failures INDEXED BY failures_by_run WHERE run_id IS NOT NULL"),
              std::vector<std::string>{"4"});
    auto plan = [&](std::string const& sql) { return query_plan(path, sql); };
    for (auto const* where : {"", " AND (resolved_at IS NULL)"}) {
        auto page = plan(std::string("SELECT failure_id FROM failures WHERE tenant_id = 't1'") + where +
                         " AND failure_id > '' ORDER BY failure_id LIMIT 51");
        EXPECT_EQ(page.find("TEMP B-TREE"), std::string::npos) << page;
    }
    auto by_run = plan("SELECT failure_id FROM failures WHERE tenant_id = 't1' AND (run_id = 'run-1') ORDER BY failure_id LIMIT 51");
    EXPECT_NE(by_run.find("failures_by_run"), std::string::npos) << by_run;
}

// Migration 16: a page of a direction's deliveries walks its key instead of sorting them all;
// settled deliveries stay out of the status index, and each filter still finds its deliveries.
TEST(sqlite_store, a_version_15_database_lists_its_deliveries_in_key_order) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto a = tenant("t1"), b = tenant("t2");
    auto now = system_clock::instance().now();
    std::vector<std::string> first, second, theirs;
    {
        auto s = open_sqlite(dir, nullptr);
        for (int i = 0; i < 5; ++i) {
            auto p = accepted_inbound(a, now, "gh-" + std::to_string(i), R"({"n":1})", false, i % 2 ? "conn-2" : "conn-1");
            add_inbound(*s, a, p);
            (i % 2 ? second : first).push_back(p.delivery.id());
        }
        auto p = accepted_inbound(b, now, "gh-0", R"({"n":1})", false);
        add_inbound(*s, b, p);
        theirs.push_back(p.delivery.id());
    }
    back_to_schema_15(path);
    auto s = open_sqlite(dir, nullptr);
    EXPECT_EQ(query_rows(path, "PRAGMA user_version"), std::vector<std::string>{std::to_string(storage::sqlite_schema_version)});
    auto ids = [&](request_context const& ctx, storage::delivery_query q) {
        return listed_ids(*s, ctx, 2, [&](unit_of_work& uow, storage::page_request const& p) { return uow.deliveries().list(q, p); });
    };
    auto all = first;
    all.insert(all.end(), second.begin(), second.end());
    using webhooks::delivery_direction;
    using webhooks::delivery_status;
    EXPECT_EQ(ids(a, {.direction = delivery_direction::inbound}), sorted(all));
    EXPECT_EQ(ids(a, {}), sorted(all));
    EXPECT_EQ(ids(a, {.direction = delivery_direction::inbound, .connection_id = "conn-2"}), sorted(second));
    EXPECT_EQ(ids(a, {.direction = delivery_direction::inbound, .status = delivery_status::accepted}), sorted(all));
    EXPECT_TRUE(ids(a, {.direction = delivery_direction::inbound, .status = delivery_status::failed}).empty());
    EXPECT_TRUE(ids(a, {.direction = delivery_direction::outbound}).empty());
    EXPECT_EQ(ids(b, {.direction = delivery_direction::inbound}), theirs);

    EXPECT_EQ(query_rows(path, "SELECT COUNT(*) FROM deliveries INDEXED BY deliveries_unsettled WHERE status NOT IN ('Accepted', 'Delivered')"),
              std::vector<std::string>{"0"});
    auto plan = [&](std::string const& sql) { return query_plan(path, sql); };
    for (auto const* where : {"direction = 'Inbound'", "direction = 'Inbound' AND connection_id = 'conn-2'"}) {
        auto page = plan(std::string("SELECT delivery_id FROM deliveries WHERE tenant_id = 't1' AND ") + where +
                         " AND delivery_id > '' ORDER BY delivery_id LIMIT 51");
        EXPECT_EQ(page.find("TEMP B-TREE"), std::string::npos) << page;
    }
    auto dead = plan("SELECT delivery_id FROM deliveries WHERE tenant_id = 't1' AND direction = 'Outbound' AND "
                     "status = 'DeadLettered' AND status NOT IN ('Accepted', 'Delivered') ORDER BY delivery_id LIMIT 51");
    EXPECT_NE(dead.find("deliveries_unsettled"), std::string::npos) << dead;
}

// A page of a tenant's deliveries of both directions merges the two directions' ranges of
// deliveries_by_direction in key order instead of sorting every delivery of the tenant; every
// filter and every page boundary still finds exactly its deliveries.
TEST(sqlite_store, deliveries_of_both_directions_list_in_key_order) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto a = tenant("t1"), b = tenant("t2");
    auto now = system_clock::instance().now();
    std::vector<std::string> all, pending, delivered, inbound, on_conn2, of_evt3, theirs;
    auto s = open_sqlite(dir, nullptr);
    for (auto const& ctx : {a, b}) {
        must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto sub = must(webhooks::webhook_subscription::create(
                ctx, now, {"proj-1", "order.*", "https://hooks.example.com", "vault://local/t1/s?version=1", {}, {}}));
            must(uow.subscriptions().save(sub));
            for (int i = 0; i < 9; ++i) {
                auto at = now + std::chrono::milliseconds(i);  // directions interleaved in key order
                auto evt = "evt-" + std::to_string(i);  // one delivery per subscription and event
                std::optional<webhooks::webhook_delivery> d;
                if (i % 3 == 1) {
                    d = must(webhooks::webhook_delivery::inbound(ctx, at, i % 2 ? "conn-2" : "conn-1", "prov-1",
                                                                 "gh-" + std::to_string(i), "github.push", std::nullopt,
                                                                 std::string("hash")));
                    must(d->accept({.signature_valid = true, .tenant_resolved = true}, at));
                } else {
                    d = must(webhooks::webhook_delivery::outbound(ctx, at, sub, "order.paid", evt, {}));
                    if (i % 3 == 2) must(d->record_success({0, 200, 5, {}, {}, at}));
                }
                if (ctx.tenant_id == "t2") {
                    theirs.push_back(d->id());
                } else {
                    all.push_back(d->id());
                    (i % 3 == 0 ? pending : i % 3 == 2 ? delivered : inbound).push_back(d->id());
                    if (i % 3 == 1 && i % 2) on_conn2.push_back(d->id());
                    if (evt == "evt-3") of_evt3.push_back(d->id());
                }
                must(uow.deliveries().save(*d));
            }
            return result<void>{};
        }));
    }
    using webhooks::delivery_status;
    for (std::size_t limit : {1u, 2u, 3u, 100u}) {
        auto ids = [&](request_context const& ctx, storage::delivery_query q) {
            return listed_ids(*s, ctx, limit, [&](unit_of_work& uow, storage::page_request const& p) { return uow.deliveries().list(q, p); });
        };
        EXPECT_EQ(ids(a, {}), sorted(all)) << limit;
        EXPECT_EQ(ids(a, {.status = delivery_status::pending}), sorted(pending)) << limit;
        EXPECT_EQ(ids(a, {.status = delivery_status::delivered}), sorted(delivered)) << limit;
        EXPECT_EQ(ids(a, {.status = delivery_status::accepted}), sorted(inbound)) << limit;
        EXPECT_TRUE(ids(a, {.status = delivery_status::dead_lettered}).empty()) << limit;
        EXPECT_EQ(ids(a, {.connection_id = "conn-2"}), sorted(on_conn2)) << limit;
        EXPECT_EQ(ids(a, {.event_id = "evt-3"}), of_evt3) << limit;
        EXPECT_EQ(ids(b, {}), sorted(theirs)) << limit;
    }

    auto plan = query_plan(path, "SELECT delivery_id FROM deliveries WHERE tenant_id = 't1' AND (direction = 'Inbound') "
                                 "AND delivery_id > '' UNION ALL SELECT delivery_id FROM deliveries WHERE tenant_id = 't1' "
                                 "AND (direction = 'Outbound') AND delivery_id > '' ORDER BY delivery_id LIMIT 51");
    EXPECT_NE(plan.find("MERGE"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << plan;
}

// A page reads its rows' child lists in a few queries (up to 32 owners each), not one per row:
// each delivery still gets exactly its own attempts, in order, across chunk boundaries and for
// rows with none.
TEST(sqlite_store, a_page_of_deliveries_carries_each_ones_own_attempts_in_order) {
    temp_dir dir;
    auto s = open_sqlite(dir, nullptr);
    auto ctx = tenant("t1");
    auto now = system_clock::instance().now();
    std::map<std::string, std::vector<int>> expected;  // delivery id -> its attempts' http statuses
    must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
        auto sub = must(webhooks::webhook_subscription::create(
            ctx, now, {"proj-1", "order.*", "https://hooks.example.com", "vault://local/t1/s?version=1", {}, {}}));
        must(uow.subscriptions().save(sub));
        for (int i = 0; i < 70; ++i) {
            auto d = must(webhooks::webhook_delivery::outbound(ctx, now, sub, "order.paid", "evt-" + std::to_string(i), {}));
            auto& statuses = expected[d.id()];
            for (int a = 0; a < i % 4; ++a) {
                int status = 500 + i * 4 + a;  // unique per delivery and attempt
                must(d.record_failure({a, status, 5, {}, {}, now}, now + std::chrono::hours(1)));
                statuses.push_back(status);
            }
            must(uow.deliveries().save(d));
        }
        return {};
    }));
    for (std::size_t limit : {7u, 50u, 100u}) {
        std::size_t seen = 0;
        storage::page_request p{.limit = limit};
        for (;;) {
            auto page = must(storage::read_for(*s, ctx, [&](unit_of_work& uow) { return uow.deliveries().list({}, p); }));
            for (auto const& d : page.items) {
                std::vector<int> statuses;
                for (auto const& a : d.data().delivery_attempts) statuses.push_back(static_cast<int>(a.http_status.value_or(0)));
                EXPECT_EQ(statuses, expected[d.id()]) << d.id() << " in pages of " << limit;
                ++seen;
            }
            if (page.next_cursor.empty()) break;
            p.cursor = page.next_cursor;
        }
        EXPECT_EQ(seen, expected.size()) << limit;
    }
}

// Migration 15: payloads kept in their own table move into their deliveries' rows, byte for
// byte, and are read, put back into their events and removed as before.
TEST(sqlite_store, a_version_14_database_keeps_its_inbound_payloads_in_their_deliveries) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto ctx = tenant("t1");
    auto now = system_clock::instance().now();
    std::string const raw1 = R"({"action":"opened","n":1})", raw2 = std::string("{\"n\":2,\"z\":\"\0\"}", 15);
    auto once = accepted_inbound(ctx, now, "gh-1", raw1, true);
    auto kept = accepted_inbound(ctx, now, "gh-2", raw2, false);
    {
        auto s = open_sqlite(dir, nullptr);
        add_inbound(*s, ctx, once);
        add_inbound(*s, ctx, kept);
    }
    back_to_schema_14(path);
    ASSERT_EQ(query_rows(path, "SELECT COUNT(*) FROM delivery_payloads"), std::vector<std::string>{"2"});

    auto s = open_sqlite(dir, nullptr);
    EXPECT_EQ(query_rows(path, "PRAGMA user_version"), std::vector<std::string>{std::to_string(storage::sqlite_schema_version)});
    EXPECT_TRUE(query_rows(path, "SELECT name FROM sqlite_master WHERE name = 'delivery_payloads'").empty());
    auto payload = [&](request_context const& c, std::string const& id) {
        return storage::read_for(*s, c, [&](unit_of_work& uow) { return uow.deliveries().payload(id); });
    };
    EXPECT_EQ(must(payload(ctx, once.delivery.id())), raw1);
    EXPECT_EQ(must(payload(ctx, kept.delivery.id())), raw2);
    EXPECT_EQ(payload(tenant("t2"), kept.delivery.id()).error(), errc::not_found);
    auto events = must(s->pending_events(10));
    ASSERT_EQ(events.size(), 4u);
    EXPECT_EQ(events[1].envelope.data.at("body").at("n").as_int64(), 1);  // its body is the moved payload

    must(s->transact(ctx, [&](unit_of_work& uow) { return uow.deliveries().remove_payload(kept.delivery.id()); }));
    EXPECT_EQ(payload(ctx, kept.delivery.id()).error(), errc::not_found);
    must(s->transact(ctx, [&](unit_of_work& uow) { return uow.deliveries().remove_payload(kept.delivery.id()); }));
    must(s->transact(ctx, [&](unit_of_work& uow) { return uow.deliveries().put_payload(kept.delivery.id(), "again"); }));
    EXPECT_EQ(must(payload(ctx, kept.delivery.id())), "again");
    EXPECT_EQ(s->transact(tenant("t2"), [&](unit_of_work& uow) { return uow.deliveries().put_payload(kept.delivery.id(), "theirs"); })
                  .error(),
              errc::not_found);
    must(s->transact(ctx, [&](unit_of_work& uow) { return uow.deliveries().remove(kept.delivery.id()); }));
    EXPECT_EQ(payload(ctx, kept.delivery.id()).error(), errc::not_found);
    EXPECT_EQ(query_rows(path, "SELECT COUNT(*) FROM deliveries WHERE payload IS NOT NULL"), std::vector<std::string>{"1"});
}

// Migration 11: events written before it hold their body in their envelope, and are read,
// published and retained as before.
TEST(sqlite_store, a_version_10_database_keeps_its_events_whole_and_its_payloads_purgeable) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto ctx = tenant("t1");
    auto now = system_clock::instance().now();
    auto whole = accepted_inbound(ctx, now, "gh-1", R"({"action":"opened","n":1})", false);
    {
        auto s = open_sqlite(dir, nullptr);
        add_inbound(*s, ctx, whole);
    }
    back_to_schema_10(path);
    auto s = open_sqlite(dir, nullptr);
    EXPECT_EQ(query_rows(path, "SELECT COUNT(*) FROM outbox WHERE body_from_payload IS NULL"), std::vector<std::string>{"2"});
    auto once = accepted_inbound(ctx, now, "gh-2", R"({"action":"opened","n":2})", true);
    add_inbound(*s, ctx, once);
    auto events = must(s->pending_events(10));
    ASSERT_EQ(events.size(), 4u);
    EXPECT_EQ(events[1].envelope.data.at("body").at("n").as_int64(), 1);
    EXPECT_EQ(events[3].envelope.data.at("body").at("n").as_int64(), 2);
    auto purgeable = must(storage::read_for(*s, ctx, [&](unit_of_work& uow) {
        return uow.deliveries().with_payload_before(now + std::chrono::hours(1), 10);
    }));
    ASSERT_EQ(purgeable.size(), 1u) << "the old delivery's event holds its own body; the new one's is its payload";
    EXPECT_EQ(purgeable.front().id(), whole.delivery.id());
}

// An inbound event whose body is its delivery's payload, parked as dead, is replayed with its
// body; once retention purged the payload (30 days, dead or not), a replay is refused rather than
// parked again at once ("its body is gone"), and the event can still be dropped.
TEST(sqlite_store, a_dead_event_is_replayed_with_its_kept_body_and_refused_once_the_body_is_purged) {
    temp_dir dir;
    auto ctx = tenant("t1");
    auto now = system_clock::instance().now();
    auto s = open_sqlite(dir, nullptr);
    auto p = accepted_inbound(ctx, now, "gh-1", R"({"n":1})", true);
    add_inbound(*s, ctx, p);
    auto park_body_event = [&] {
        for (auto const& r : must(s->pending_events(10)))
            if (r.envelope.data.if_contains("body")) {
                must(s->park_dead(r.sequence, now));
                return r.envelope.event_id;
            }
        return std::string();
    };
    auto body_event = park_body_event();
    ASSERT_FALSE(body_event.empty());
    auto release = [&](request_context const& c, bool republish) {
        return s->transact(c, [&](unit_of_work& uow) { return uow.release_dead_event(body_event, republish); });
    };
    EXPECT_EQ(release(tenant("t2"), true).error(), errc::not_found) << "another tenant's event";
    must(release(ctx, true));
    auto again = must(s->pending_events(10));
    auto replayed = std::find_if(again.begin(), again.end(), [&](auto const& r) { return r.envelope.event_id == body_event; });
    ASSERT_NE(replayed, again.end());
    EXPECT_EQ(replayed->envelope.data.at("body").at("n").as_int64(), 1);
    EXPECT_EQ(replayed->attempts, 0);

    EXPECT_EQ(park_body_event(), body_event);
    auto purgeable = must(storage::read_for(*s, ctx, [&](unit_of_work& uow) {
        return uow.deliveries().with_payload_before(now + std::chrono::hours(1), 10);
    }));
    ASSERT_EQ(purgeable.size(), 1u) << "a dead event's payload goes by age";
    must(s->transact(ctx, [&](unit_of_work& uow) { return uow.deliveries().remove_payload(p.delivery.id()); }));
    auto refused = release(ctx, true);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error(), errc::invalid_state);
    EXPECT_NE(refused.error().detail().find("purged"), std::string::npos) << refused.error().detail();
    for (auto const& r : must(s->pending_events(10))) EXPECT_NE(r.envelope.event_id, body_event) << "refused, yet offered";
    must(release(ctx, false));
    EXPECT_EQ(release(ctx, false).error(), errc::not_found);
}

TEST(sqlite_store, an_event_whose_kept_body_was_deleted_behind_the_stores_back_is_an_error_naming_its_delivery) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto ctx = tenant("t1");
    auto s = open_sqlite(dir, nullptr);
    auto p = accepted_inbound(ctx, system_clock::instance().now(), "gh-1", R"({"n":1})", true);
    add_inbound(*s, ctx, p);
    exec_sql(path, "UPDATE deliveries SET payload = NULL");
    auto events = s->pending_events(10);
    ASSERT_FALSE(events);
    EXPECT_EQ(events.error(), errc::storage_failure);
    EXPECT_NE(events.error().detail().find(p.delivery.id()), std::string::npos) << events.error().detail();
}

TEST(sqlite_store, a_version_7_database_keeps_its_inbound_registrations_without_a_previous_secret) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto ctx = tenant("t1");
    {
        auto s = open_sqlite(dir, nullptr);
        must(s->transact(ctx, [&](unit_of_work& uow) { return uow.inbound_webhooks().save({"conn-1", "github", "wh"}); }));
    }
    back_to_schema_7(path);
    auto s = open_sqlite(dir, nullptr);
    must(s->read(ctx, [&](unit_of_work& uow) -> result<void> {
        auto r = must(uow.inbound_webhooks().find("conn-1"));
        EXPECT_EQ(r.scheme, "github");
        EXPECT_EQ(r.secret_name, "wh");
        EXPECT_TRUE(r.previous.empty());
        return {};
    }));
}

TEST(sqlite_store, a_version_6_database_keeps_its_subscriptions_and_deliveries_with_the_new_defaults) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto ctx = tenant("t1");
    std::string sub_id, delivery_id;
    {
        auto s = open_sqlite(dir, nullptr);
        must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto now = system_clock::instance().now();
            auto sub = must(webhooks::webhook_subscription::create(
                ctx, now, {"proj-1", "order.*", "https://hooks.example.com", "vault://local/t1/s?version=1", {}, {}}));
            auto d = must(webhooks::webhook_delivery::outbound(ctx, now, sub, "order.paid", "evt-1", {}));
            sub_id = sub.id(), delivery_id = d.id();
            must(uow.subscriptions().save(sub));
            return uow.deliveries().save(d);
        }));
    }
    back_to_schema_6(path);
    auto s = open_sqlite(dir, nullptr);
    must(s->read(ctx, [&](unit_of_work& uow) -> result<void> {
        auto sub = must(uow.subscriptions().find(sub_id));
        EXPECT_FALSE(sub.data().ordered);
        EXPECT_EQ(sub.data().consecutive_failures, 0);
        EXPECT_FALSE(sub.data().max_per_second);
        return {};
    }));
    auto now = system_clock::instance().now();
    auto claimed = must(s->claim_deliveries(now, "w", now + std::chrono::seconds(30), 10)).deliveries;
    ASSERT_EQ(claimed.size(), 1u);
    EXPECT_EQ(claimed[0].delivery.id(), delivery_id);
}

// Migration 9 drops deliveries_due and narrows two delivery indexes: the rows stay, and every
// query that used those indexes finds the same deliveries (through the narrower ones).
TEST(sqlite_store, a_version_8_database_keeps_its_deliveries_and_finds_them_through_the_narrower_indexes) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto ctx = tenant("t1");
    auto now = system_clock::instance().now();
    std::string sub_id, pending_id, delivered_id, inbound_id;
    {
        auto s = open_sqlite(dir, nullptr);
        must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto sub = must(webhooks::webhook_subscription::create(
                ctx, now, {"proj-1", "order.*", "https://hooks.example.com", "vault://local/t1/s?version=1", {}, {}}));
            auto pending = must(webhooks::webhook_delivery::outbound(ctx, now, sub, "order.paid", "evt-1", {}));
            auto delivered = must(webhooks::webhook_delivery::outbound(ctx, now, sub, "order.paid", "evt-2", {}));
            must(delivered.record_success({0, 200, 5, {}, {}, now}));
            auto inbound = must(webhooks::webhook_delivery::inbound(ctx, now, "conn-1", "prov-1", "gh-1", "github.push",
                                                                    std::nullopt, std::string("hash")));
            sub_id = sub.id(), pending_id = pending.id(), delivered_id = delivered.id(), inbound_id = inbound.id();
            must(uow.subscriptions().save(sub));
            must(uow.deliveries().save(pending));
            must(uow.deliveries().save(delivered));
            return uow.deliveries().save(inbound);
        }));
    }
    back_to_schema_8(path);
    auto s = open_sqlite(dir, nullptr);
    EXPECT_EQ(query_rows(path, "PRAGMA user_version"), std::vector<std::string>{std::to_string(storage::sqlite_schema_version)});
    EXPECT_TRUE(query_rows(path, "SELECT 1 FROM sqlite_master WHERE name = 'deliveries_due'").empty());
    auto ids = [](auto const& deliveries) {
        std::set<std::string> out;
        for (auto const& d : deliveries) out.insert(d.id());
        return out;
    };
    must(s->read(ctx, [&](unit_of_work& uow) -> result<void> {
        EXPECT_EQ(ids(must(uow.deliveries().list({.subscription_id = sub_id}, {})).items),
                  (std::set<std::string>{pending_id, delivered_id}));
        EXPECT_EQ(ids(must(uow.deliveries().due(now + std::chrono::hours(1), 10))), std::set<std::string>{pending_id});
        EXPECT_EQ(ids(must(uow.deliveries().ended_before(now + std::chrono::hours(1), 10))),
                  std::set<std::string>{delivered_id});
        EXPECT_EQ(must(uow.deliveries().find_inbound("conn-1", "gh-1")).id(), inbound_id);
        EXPECT_EQ(ids(must(uow.deliveries().list({.direction = webhooks::delivery_direction::inbound}, {})).items),
                  std::set<std::string>{inbound_id});
        return {};
    }));
    auto claimed = must(s->claim_deliveries(now + std::chrono::hours(1), "w", now + std::chrono::hours(2), 10)).deliveries;
    ASSERT_EQ(claimed.size(), 1u);
    EXPECT_EQ(claimed[0].delivery.id(), pending_id);
    // The narrowed indexes still serve the lookups by subscription and by last attempt.
    auto plan = [&](std::string const& sql) { return query_plan(path, sql); };
    EXPECT_NE(plan("SELECT delivery_id FROM deliveries WHERE tenant_id = 't1' AND subscription_id = 's'")
                  .find("deliveries_by_subscription"),
              std::string::npos);
    EXPECT_NE(plan("SELECT delivery_id FROM deliveries WHERE tenant_id = 't1' AND direction = 'Outbound' "
                   "AND last_attempt_at < 5 ORDER BY last_attempt_at")
                  .find("deliveries_ended"),
              std::string::npos);
}

// An inbound delivery ends (accepted or refused) in the unit that makes it, so retention finds it
// by its id, a ULID of that moment, and the time index holds only outbound deliveries (schema
// 19): receiving a webhook writes one B-tree fewer. Retention still sees every ended delivery,
// oldest first, before and after the upgrade of a version-18 file.
TEST(sqlite_store, ended_inbound_deliveries_are_found_by_their_ids_and_kept_out_of_the_time_index) {
    using namespace std::chrono_literals;
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto ctx = tenant("t1");
    auto const now = system_clock::instance().now();
    auto const t0 = now - 3h, t1 = now - 2h, t2 = now - 1h;
    std::string early, refused, delivered, late;
    {
        auto s = open_sqlite(dir, nullptr);
        must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto accepted = [&](time_point at, std::string vendor_id) {
                auto d = must(webhooks::webhook_delivery::inbound(ctx, at, "conn-1", "prov-1", std::move(vendor_id),
                                                                  "github.push", std::nullopt, std::string("hash")));
                must(d.accept({.signature_valid = true, .tenant_resolved = true}, at, boost::json::object{}));
                must(uow.deliveries().save(d));
                return d.id();
            };
            early = accepted(t0, "gh-1");
            auto r = must(webhooks::webhook_delivery::refused_inbound(ctx, t0 + 1ms, "conn-1", "prov-1", "github.push",
                                                                      "signature_mismatch"));
            refused = r.id();
            must(uow.deliveries().save(r));
            auto sub = must(webhooks::webhook_subscription::create(
                ctx, t0, {"proj-1", "order.*", "https://hooks.example.com", "vault://local/t1/s?version=1", {}, {}}));
            must(uow.subscriptions().save(sub));
            auto out = must(webhooks::webhook_delivery::outbound(ctx, t0, sub, "order.paid", "evt-1", {}));
            must(out.record_success({0, 200, 5, {}, {}, t1}));
            delivered = out.id();
            must(uow.deliveries().save(out));
            late = accepted(t2, "gh-2");
            return {};
        }));
    }
    auto ended = [&](storage::store& s, time_point before, std::size_t limit) {
        std::vector<std::string> ids;
        must(s.read(ctx, [&](unit_of_work& uow) -> result<void> {
            for (auto const& d : must(uow.deliveries().ended_before(before, limit))) ids.push_back(d.id());
            return {};
        }));
        return ids;
    };
    auto index_entries = [&] {
        return query_rows(path, "SELECT sum(ncell) FROM dbstat WHERE name = 'deliveries_ended'");
    };
    auto check = [&](storage::store& s) {
        EXPECT_EQ(ended(s, t2 + 1ms, 10), (std::vector<std::string>{early, refused, delivered, late}));
        EXPECT_EQ(ended(s, t2, 10), (std::vector<std::string>{early, refused, delivered}));
        EXPECT_EQ(ended(s, t2 + 1ms, 3), (std::vector<std::string>{early, refused, delivered}));
        EXPECT_EQ(ended(s, t1 + 1ms, 2), (std::vector<std::string>{early, refused}));
        EXPECT_TRUE(ended(s, t0, 10).empty());
        EXPECT_EQ(index_entries(), std::vector<std::string>{"1"});  // the outbound one only
    };
    {
        auto s = open_sqlite(dir, nullptr);
        check(*s);
    }
    back_to_schema_18(path);
    EXPECT_EQ(index_entries(), std::vector<std::string>{"4"});
    auto s = open_sqlite(dir, nullptr);
    EXPECT_EQ(query_rows(path, "PRAGMA user_version"), std::vector<std::string>{std::to_string(storage::sqlite_schema_version)});
    check(*s);
}

/** A file turned back by `back_to` before the migration that indexed `column`, with three
 *  failures of `source` (of sources "src-a", "src-b", "src-a"): after the migration, a query by
 *  `field` finds each source's failures, through `index`. */
void failures_are_found_by_their_source_after_migration(void (*back_to)(std::string const&), failures::failure_source source,
                                                        failures::classification const& c,
                                                        std::optional<std::string> storage::failure_query::*field,
                                                        std::string const& column, std::string const& index) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto ctx = tenant("t1");
    {
        auto s = open_sqlite(dir, nullptr);
        must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
            for (auto const* id : {"src-a", "src-b", "src-a"}) {
                auto f = must(failures::integration_failure::record(ctx, system_clock::instance().now(), source, id, "prov-1", c));
                if (auto r = uow.failures().save(f); !r) return r;
            }
            return {};
        }));
    }
    back_to(path);
    auto s = open_sqlite(dir, nullptr);
    EXPECT_EQ(query_rows(path, "PRAGMA user_version"), std::vector<std::string>{std::to_string(storage::sqlite_schema_version)});
    must(s->read(ctx, [&](unit_of_work& uow) -> result<void> {
        storage::failure_query a, b{.unresolved_only = true};
        a.*field = "src-a";
        b.*field = "src-b";
        EXPECT_EQ(must(uow.failures().list(a, {})).items.size(), 2u);
        EXPECT_EQ(must(uow.failures().list(b, {})).items.size(), 1u);
        return {};
    }));
    EXPECT_NE(query_plan(path, "SELECT failure_id FROM failures WHERE tenant_id = 't1' AND " + column + " = 'src-a'").find(index),
              std::string::npos);
}

// Migration 20: a credential's failures are found through their own index, so the rotation
// worker's check for an open one reads that credential's failures, not the tenant's.
TEST(sqlite_store, a_version_19_database_finds_a_credentials_failures_by_their_index) {
    failures_are_found_by_their_source_after_migration(
        back_to_schema_19, failures::failure_source::credential_rotation,
        {failures::failure_category::auth, "rotation_required", "rotate it", failures::next_action::escalate, {}},
        &storage::failure_query::credential_id, "credential_id", "failures_by_credential");
}

// Migration 32: a subscription's run of failures records when it began; one counted before the
// migration starts its clock at its next failure, and keeps its count.
TEST(sqlite_store, a_version_31_database_keeps_its_subscriptions_failure_counts) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto ctx = tenant("t1");
    auto now = system_clock::instance().now();
    std::string sub_id;
    {
        auto s = open_sqlite(dir, nullptr);
        must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto sub = must(webhooks::webhook_subscription::create(
                ctx, now, {"proj-1", "order.*", "https://hooks.example.com", "vault://local/t1/s?version=1", {}, {}}));
            for (int i = 0; i < 3; ++i) sub.record_outcome(false, now, 20);
            sub_id = sub.id();
            return uow.subscriptions().save(sub);
        }));
    }
    back_to_schema_31(path);
    exec_sql(path, "PRAGMA user_version = 31;");
    auto s = open_sqlite(dir, nullptr);
    EXPECT_EQ(query_rows(path, "PRAGMA user_version"), std::vector<std::string>{std::to_string(storage::sqlite_schema_version)});
    auto later = now + std::chrono::hours(1);
    must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
        auto sub = must(uow.subscriptions().find(sub_id));
        EXPECT_EQ(sub.data().consecutive_failures, 3);
        EXPECT_FALSE(sub.data().failing_since);
        sub.record_outcome(false, later, 20);
        return uow.subscriptions().save(sub);
    }));
    must(s->read(ctx, [&](unit_of_work& uow) -> result<void> {
        auto sub = must(uow.subscriptions().find(sub_id));
        EXPECT_EQ(sub.data().consecutive_failures, 4);
        EXPECT_EQ(sub.data().failing_since, truncate_ms(later));
        return {};
    }));
}

// Migration 30: the index by age retention removes Idempotency-Keys by.
TEST(sqlite_store, a_version_29_database_gains_the_index_its_idempotency_keys_go_by) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto ctx = tenant("t1");
    auto claim = [&](storage::store& s, std::string const& hash) {
        return s.transact(ctx, [&](unit_of_work& uow) { return uow.idempotency().claim("order-1", hash); });
    };
    { auto s = open_sqlite(dir, nullptr); }
    back_to_schema_29(path);
    auto s = open_sqlite(dir, nullptr);
    EXPECT_EQ(query_rows(path, "PRAGMA user_version"), std::vector<std::string>{std::to_string(storage::sqlite_schema_version)});
    EXPECT_EQ(query_rows(path, "SELECT name FROM sqlite_master WHERE name = 'idempotency_keys_by_time'").size(), 1u);
    must(claim(*s, "first"));
    EXPECT_EQ(claim(*s, "another").error(), errc::idempotency_key_reused);
    auto removed = must(storage::transact_for(*s, ctx, [&](unit_of_work& uow) {
        return uow.idempotency().remove_before(system_clock::instance().now() + std::chrono::hours(1), 10);
    }));
    EXPECT_EQ(removed, 1u);
    must(claim(*s, "another"));
}

// Migration 31: claims made before it hold the reference host's digests of HTTP bodies, which no
// request's digest matches: they go, and the key is claimed anew by its next request.
TEST(sqlite_store, a_version_30_database_drops_the_hosts_idempotency_claims) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto ctx = tenant("t1");
    auto claim = [&](storage::store& s, std::string const& hash) {
        return s.transact(ctx, [&](unit_of_work& uow) { return uow.idempotency().claim("order-1", hash); });
    };
    {
        auto s = open_sqlite(dir, nullptr);
        must(claim(*s, "sha256-of-the-http-body"));
    }
    back_to_schema_30(path);
    auto s = open_sqlite(dir, nullptr);
    EXPECT_EQ(query_rows(path, "PRAGMA user_version"), std::vector<std::string>{std::to_string(storage::sqlite_schema_version)});
    must(claim(*s, "sha256-of-the-request"));
    EXPECT_EQ(claim(*s, "sha256-of-the-http-body").error(), errc::idempotency_key_reused);
}

TEST(sqlite_store, a_version_26_database_gains_refresh_leases) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto ctx = tenant("t1");
    { auto s = open_sqlite(dir, nullptr); }
    back_to_schema_26(path);
    auto s = open_sqlite(dir, nullptr);
    EXPECT_EQ(query_rows(path, "PRAGMA user_version"), std::vector<std::string>{std::to_string(storage::sqlite_schema_version)});
    auto now = time_point(std::chrono::milliseconds(1'900'000'000'123));
    auto lease = [&](std::string const& owner) {
        bool taken = false;
        must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
            taken = must(uow.credentials().lease_refresh("cred-1", owner, now, now + std::chrono::seconds(30)));
            return {};
        }));
        return taken;
    };
    EXPECT_TRUE(lease("p1"));
    EXPECT_FALSE(lease("p2"));
}

TEST(sqlite_store, a_version_25_database_keeps_its_replaced_signing_secret_and_takes_older_ones) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto ctx = tenant("t1");
    auto now = time_point(std::chrono::milliseconds(1'900'000'000'123));  // stored to the millisecond
    std::string id;
    {
        auto s = open_sqlite(dir, nullptr);
        must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto sub = must(webhooks::webhook_subscription::create(
                ctx, now, {"proj-1", "order.*", "https://hooks.example.com", "vault://local/t1/s1", {}, {}}));
            must(sub.rotate_signing_secret("vault://local/t1/s2", now, std::chrono::hours(24)));
            id = sub.id();
            return uow.subscriptions().save(sub);
        }));
    }
    back_to_schema_25(path);
    auto s = open_sqlite(dir, nullptr);
    EXPECT_EQ(query_rows(path, "PRAGMA user_version"), std::vector<std::string>{std::to_string(storage::sqlite_schema_version)});
    auto find = [&] { return must(storage::read_for(*s, ctx, [&](unit_of_work& uow) { return uow.subscriptions().find(id); })); };
    EXPECT_EQ(find().signing_secret_refs(now), (std::vector<std::string>{"vault://local/t1/s2", "vault://local/t1/s1"}));
    EXPECT_FALSE(find().data().earlier_signing_secrets);
    must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
        auto sub = must(uow.subscriptions().find(id));
        must(sub.rotate_signing_secret("vault://local/t1/s3", now + std::chrono::hours(1), std::chrono::hours(24)));
        return uow.subscriptions().save(sub);
    }));
    auto rotated = find();
    EXPECT_EQ(rotated.signing_secret_refs(now + std::chrono::hours(1)),
              (std::vector<std::string>{"vault://local/t1/s3", "vault://local/t1/s2", "vault://local/t1/s1"}));
    ASSERT_TRUE(rotated.data().earlier_signing_secrets);
    EXPECT_EQ(rotated.data().earlier_signing_secrets->at(0).until, now + std::chrono::hours(24));
    EXPECT_EQ(*rotated.data().previous_secret_until, now + std::chrono::hours(25));
}

TEST(sqlite_store, a_version_24_database_keeps_its_replaced_inbound_secret_and_takes_older_ones) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto ctx = tenant("t1");
    auto until = time_point(std::chrono::milliseconds(1'900'000'000'123));  // stored to the millisecond
    {
        auto s = open_sqlite(dir, nullptr);
        must(s->transact(ctx, [&](unit_of_work& uow) { return uow.inbound_webhooks().save({"conn-1", "github", "wh-2", {{"wh-1", until}}}); }));
    }
    back_to_schema_24(path);
    auto s = open_sqlite(dir, nullptr);
    EXPECT_EQ(query_rows(path, "PRAGMA user_version"), std::vector<std::string>{std::to_string(storage::sqlite_schema_version)});
    auto find = [&] {
        return must(storage::read_for(*s, ctx, [&](unit_of_work& uow) { return uow.inbound_webhooks().find("conn-1"); }));
    };
    EXPECT_EQ(find().previous, (std::vector<storage::replaced_secret>{{"wh-1", until}}));
    auto reg = find();
    reg.previous.insert(reg.previous.begin(), {reg.secret_name, until + std::chrono::hours(1)});
    reg.secret_name = "wh-3";
    must(s->transact(ctx, [&](unit_of_work& uow) { return uow.inbound_webhooks().save(reg); }));
    EXPECT_EQ(find().previous, (std::vector<storage::replaced_secret>{{"wh-2", until + std::chrono::hours(1)}, {"wh-1", until}}));
}

TEST(sqlite_store, a_version_23_database_keeps_its_operations_and_takes_their_idempotency_headers) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto ctx = tenant("t1");
    auto now = system_clock::instance().now();
    std::string provider, old_client;
    {
        auto s = open_sqlite(dir, nullptr);
        provider = save_active_provider(*s, ctx, now);
        must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto c = must(providers::external_api_client::register_new(ctx, now, must(uow.providers().find(provider)), client_spec()));
            old_client = c.id();
            return uow.api_clients().save(c);
        }));
    }
    back_to_schema_23(path);
    auto s = open_sqlite(dir, nullptr);
    EXPECT_EQ(query_rows(path, "PRAGMA user_version"), std::vector<std::string>{std::to_string(storage::sqlite_schema_version)});
    auto kept = must(storage::read_for(*s, ctx, [&](unit_of_work& uow) { return uow.api_clients().find(old_client); }));
    ASSERT_EQ(kept.data().operations.size(), 1u);
    EXPECT_EQ(kept.data().operations[0].path, "/v1/accounts/{account}/messages");
    EXPECT_FALSE(kept.data().operations[0].idempotency_header);
    auto spec = client_spec("Acme.Sms.ApiClient", "1.1.0");
    spec.operations[0].idempotency_header = "Idempotency-Key";
    std::string keyed;
    must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
        auto c = must(providers::external_api_client::register_new(ctx, now, must(uow.providers().find(provider)), spec));
        keyed = c.id();
        return uow.api_clients().save(c);
    }));
    auto read = must(storage::read_for(*s, ctx, [&](unit_of_work& uow) { return uow.api_clients().find(keyed); }));
    EXPECT_EQ(read.data().operations.at(0).idempotency_header, std::optional<std::string>("Idempotency-Key"));
}

// An ordered subscription's head is found by one search of its index, not by sorting the
// subscription's deliveries for each due delivery a claim reads.
TEST(sqlite_store, a_version_22_database_finds_an_ordered_subscriptions_head_by_index) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    auto ctx = tenant("t1");
    auto now = system_clock::instance().now();
    std::vector<std::string> ids;
    {
        auto s = open_sqlite(dir, nullptr);
        must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
            webhooks::subscription_spec spec{"proj-1", "order.*", "https://hooks.example.com", "vault://local/t1/s?version=1", {}, {}};
            spec.ordered = true;
            auto sub = must(webhooks::webhook_subscription::create(ctx, now, spec));
            must(uow.subscriptions().save(sub));
            for (auto const* e : {"evt-1", "evt-2", "evt-3"}) {
                auto d = must(webhooks::webhook_delivery::outbound(ctx, now, sub, "order.paid", e, std::string("blob://p")));
                must(uow.deliveries().save(d));
                ids.push_back(d.id());
            }
            return {};
        }));
    }
    back_to_schema_22(path);
    auto s = open_sqlite(dir, nullptr);
    EXPECT_EQ(query_rows(path, "PRAGMA user_version"), std::vector<std::string>{std::to_string(storage::sqlite_schema_version)});
    auto first = must(s->claim_deliveries(now + std::chrono::seconds(1), "w", now + std::chrono::seconds(30), 10)).deliveries;
    ASSERT_EQ(first.size(), 1u);
    EXPECT_EQ(first[0].delivery.id(), ids[0]);
    EXPECT_TRUE(must(s->claim_deliveries(now + std::chrono::seconds(1), "w", now + std::chrono::seconds(30), 10)).deliveries.empty());
    auto plan = query_plan(path, "SELECT o.rowid FROM deliveries o WHERE o.tenant_id = 't1' AND o.subscription_id = 's' "
                                 "AND o.direction = 'Outbound' AND o.status IN ('Pending', 'Failed') "
                                 "ORDER BY o.created_at, o.rowid LIMIT 1");
    EXPECT_NE(plan.find("deliveries_ordered_head (tenant_id=? AND subscription_id=?)"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << plan;
}

TEST(sqlite_store, a_version_21_database_finds_a_connections_failures_by_the_connection) {
    failures_are_found_by_their_source_after_migration(
        back_to_schema_21, failures::failure_source::health_probe,
        {failures::failure_category::transient, "health_check_failed", "got 503", failures::next_action::retry,
         system_clock::instance().now()},
        &storage::failure_query::connection_id, "connection_id", "failures_by_connection");
}

TEST(sqlite_store, a_version_20_database_steps_from_tenant_to_tenant_through_the_claim_index) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    { auto s = open_sqlite(dir, nullptr); }
    back_to_schema_20(path);
    auto s = open_sqlite(dir, nullptr);
    EXPECT_EQ(query_rows(path, "PRAGMA user_version"), std::vector<std::string>{std::to_string(storage::sqlite_schema_version)});
    // The step past a tenant holding its share is one search of the index, not a walk of its rows.
    auto plan = query_plan(path, "SELECT tenant_id FROM deliveries INDEXED BY deliveries_claim_by_tenant "
                                 "WHERE status IN ('Pending', 'Failed') AND direction = 'Outbound' AND tenant_id > 't1' "
                                 "ORDER BY tenant_id LIMIT 1");
    EXPECT_NE(plan.find("deliveries_claim_by_tenant (tenant_id>?)"), std::string::npos) << plan;
}

/** A reference host's former host.db, as the host made it. */
void legacy_host_db(std::string const& path) {
    exec_sql(path, R"sql(
CREATE TABLE api_keys (key_hash TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, admin INTEGER NOT NULL,
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
CREATE TABLE idempotency_keys (tenant_id TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL,
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), PRIMARY KEY (tenant_id, key));
CREATE TABLE inbound_webhooks (tenant_id TEXT NOT NULL, connection_id TEXT NOT NULL, scheme TEXT NOT NULL,
  secret_name TEXT NOT NULL, PRIMARY KEY (tenant_id, connection_id));
INSERT INTO api_keys (key_hash, tenant_id, admin) VALUES ('hash-old', 't1', 0), ('hash-admin', 'ops', 1);
INSERT INTO idempotency_keys (tenant_id, key, request_hash) VALUES ('t1', 'key-1', 'body-hash');
INSERT INTO inbound_webhooks VALUES ('t1', 'conn-1', 'github', 'inbound-webhook.conn-1');
)sql");
}

/** Whether this process maps `path` into memory (a line of /proc/self/maps names it). */
bool mapped(std::string const& path) {
    std::ifstream maps("/proc/self/maps");
    for (std::string line; std::getline(maps, line);)
        if (line.ends_with(" " + path)) return true;
    return false;
}

TEST(sqlite_store, the_file_is_read_without_a_memory_map_unless_one_is_asked_for) {
    temp_dir dir;
    auto path = std::filesystem::canonical(dir.path()).string() + "/integration.db";
    auto write_and_read = [&](storage::store& s, std::size_t providers) {
        must(s.transact(tenant("t1"), [&](unit_of_work& uow) -> result<void> {
            auto p = must(providers::integration_provider::register_new(tenant("t1"), system_clock::instance().now(),
                                                                         provider_spec("p" + std::to_string(providers))));
            return uow.providers().save(p);
        }));
        EXPECT_EQ(count_providers(s, tenant("t1")), providers);
    };
    {
        // By default mapped pages never count in the process's resident set.
        auto s = must(storage::open_sqlite_store({.path = path}));
        write_and_read(*s, 1);
        EXPECT_FALSE(mapped(path));
    }
    auto s = must(storage::open_sqlite_store({.path = path, .mmap_bytes = 1 << 20}));
    write_and_read(*s, 2);
    EXPECT_TRUE(mapped(path));
}

TEST(sqlite_store, a_former_host_db_is_imported_and_the_store_keeps_its_own_rows) {
    temp_dir dir;
    legacy_host_db(dir.file("host.db"));
    auto s = open_sqlite(dir, nullptr);
    must(s->api_keys().add({"hash-admin", "t2", false}));  // already here: the store's row wins
    EXPECT_EQ(must(storage::import_host_database(dir.file("integration.db"), dir.file("host.db"))), 2u);
    auto old = must(s->api_keys().find("hash-old"));
    ASSERT_TRUE(old);
    EXPECT_EQ(old->tenant_id, "t1");
    EXPECT_EQ(must(s->api_keys().find("hash-admin"))->tenant_id, "t2");
    auto ctx = tenant("t1");
    // Its Idempotency-Key claims (digests of HTTP bodies) are not copied: the key is free.
    must(s->transact(ctx, [](unit_of_work& uow) { return uow.idempotency().claim("key-1", "request-digest"); }));
    must(s->read(ctx, [](unit_of_work& uow) -> result<void> {
        EXPECT_EQ(must(uow.inbound_webhooks().find("conn-1")).scheme, "github");
        return {};
    }));
    // Importing again copies nothing twice.
    EXPECT_EQ(must(storage::import_host_database(dir.file("integration.db"), dir.file("host.db"))), 0u);
}

// A new file takes the page size asked for; an existing one keeps its own (WAL mode cannot
// change it) and works as before.
TEST(sqlite_store, a_new_file_takes_the_configured_page_size_and_an_existing_file_keeps_its_own) {
    temp_dir dir;
    auto ctx = tenant("t1");
    auto add_provider = [&](storage::store& s, std::string key) {
        must(s.transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto p = must(providers::integration_provider::register_new(ctx, system_clock::instance().now(), provider_spec(key)));
            return uow.providers().save(p);
        }));
    };
    auto page_size = [](std::string const& path) { return query_rows(path, "PRAGMA page_size"); };
    auto fresh = dir.file("fresh.db");
    add_provider(*must(storage::open_sqlite_store({.path = fresh, .page_size = 1024})), "a");
    EXPECT_EQ(page_size(fresh), std::vector<std::string>{"1024"});
    auto by_default = dir.file("default.db");
    add_provider(*must(storage::open_sqlite_store({.path = by_default})), "a");
    EXPECT_EQ(page_size(by_default), std::vector<std::string>{std::to_string(storage::sqlite_options{}.page_size)});

    // A file made with 4096-byte pages (SQLite's default, which every earlier store used).
    auto old = dir.file("old.db");
    add_provider(*must(storage::open_sqlite_store({.path = old, .page_size = 4096})), "a");
    {
        auto s = must(storage::open_sqlite_store({.path = old, .page_size = 1024}));
        add_provider(*s, "b");
        EXPECT_EQ(count_providers(*s, ctx), 2u);
    }
    EXPECT_EQ(page_size(old), std::vector<std::string>{"4096"});
    EXPECT_EQ(query_rows(old, "PRAGMA integrity_check"), std::vector<std::string>{"ok"});

    auto bad = storage::open_sqlite_store({.path = dir.file("bad.db"), .page_size = 1000});
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error(), errc::invalid_argument);
    EXPECT_NE(bad.error().detail().find("page_size"), std::string::npos);
    EXPECT_FALSE(std::filesystem::exists(dir.file("bad.db")));
}

// A checkpoint copies only the frames no reader still needs, and the WAL starts over only when
// no reader uses it: with a reader reading all the time (session 10's checkpointer failed
// exactly here), the WAL must still stay near `checkpoint_bytes`, not grow with every commit.
TEST(sqlite_store, the_wal_stays_near_checkpoint_bytes_while_a_reader_reads_all_the_time) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    constexpr std::size_t limit = 256 * 1024;
    auto s = must(storage::open_sqlite_store({.path = path, .checkpoint_bytes = limit}));
    auto ctx = tenant("t1");
    std::atomic<bool> stop{false};
    std::atomic<int> reads{0};
    std::thread reader([&] {
        while (!stop) {
            count_providers(*s, ctx);
            ++reads;
        }
    });
    std::uintmax_t largest = 0;
    constexpr int units = 3000;  // about 30 times `limit` of WAL frames in all
    for (int i = 0; i < units; ++i) {
        must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto p = must(providers::integration_provider::register_new(ctx, system_clock::instance().now(),
                                                                         provider_spec("p" + std::to_string(i))));
            return uow.providers().save(p);
        }, durability::deferred));
        std::error_code ec;
        auto size = std::filesystem::file_size(path + "-wal", ec);
        if (!ec) largest = std::max(largest, size);
    }
    stop = true;
    reader.join();
    EXPECT_GT(reads.load(), 10);
    EXPECT_EQ(count_providers(*s, ctx), static_cast<std::size_t>(units));
    EXPECT_GT(largest, limit / 2);  // the writes did fill the WAL up to the limit
    EXPECT_LE(largest, 4 * limit) << "the WAL grew to " << largest << " bytes";
}

/** Runs `inside` from a read that is running while the store holds new reads for a forced
 *  checkpoint (the WAL past twice `checkpoint_bytes`, which that read's snapshot keeps from
 *  starting over); true when `inside` returned within 30 s. The store waits up to a minute for
 *  the running reads, so a wait for this one shows as a timeout here. */
bool returns_while_reads_are_held(std::function<void(storage::store&, request_context const&)> const& inside) {
    using namespace std::chrono_literals;
    temp_dir dir;
    auto path = dir.file("integration.db");
    constexpr std::size_t limit = 64 * 1024;
    auto s = must(storage::open_sqlite_store({.path = path, .busy_timeout = 60s, .checkpoint_bytes = limit}));
    auto ctx = tenant("t1");
    std::promise<void> reading, go, returned;
    auto returned_f = returned.get_future();
    std::thread reader([&] {
        must(s->read(ctx, [&](unit_of_work& uow) -> result<void> {
            must(uow.providers().list({.limit = 1}));  // the read's snapshot starts here
            reading.set_value();
            go.get_future().wait();
            inside(*s, ctx);
            returned.set_value();
            return {};
        }));
    });
    reading.get_future().wait();
    auto wal_bytes = [&] {
        std::error_code ec;
        auto size = std::filesystem::file_size(path + "-wal", ec);
        return ec ? std::uintmax_t{0} : size;
    };
    // At least one commit: the writer checks the WAL's size after each (the file may still be
    // as large as the migrations left it).
    int i = 0;
    do
        must(s->transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto p = must(providers::integration_provider::register_new(ctx, system_clock::instance().now(),
                                                                         provider_spec("p" + std::to_string(i))));
            return uow.providers().save(p);
        }, durability::immediate));
    while (++i < 1000 && wal_bytes() <= 2 * limit);
    go.set_value();
    bool const in_time = returned_f.wait_for(30s) == std::future_status::ready;
    reader.join();
    return in_time;
}

// The writer holds new reads back while it waits for the running ones (to empty the WAL): a read
// nested in a running read would wait for the writer, which waits for the outer read.
TEST(sqlite_store, a_read_nested_in_a_running_read_is_not_held_back_by_a_forced_checkpoint) {
    EXPECT_TRUE(returns_while_reads_are_held([](storage::store& s, request_context const& ctx) {
        EXPECT_GT(count_providers(s, ctx), 0u);
    })) << "the nested read waited for the writer's forced checkpoint";
}

// A synchronous write from inside a read waits for the writer, which would wait for that read.
TEST(sqlite_store, a_write_from_inside_a_running_read_is_not_held_by_a_forced_checkpoint) {
    EXPECT_TRUE(returns_while_reads_are_held([](storage::store& s, request_context const& ctx) {
        must(s.transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto p = must(providers::integration_provider::register_new(ctx, system_clock::instance().now(),
                                                                         provider_spec("from-a-read")));
            return uow.providers().save(p);
        }, durability::immediate));
    })) << "the write waited for the writer's forced checkpoint, which waited for its read";
}

// Retention looks only at what was made before its cutoff: a run ends, and a failure is resolved,
// after its id was made, so the walk in key order stops at the cutoff's first id instead of
// reading every younger run or failure of the tenant. A row whose end is stamped before its own
// id (a clock set back meanwhile) waits until the cutoff passes its id.
TEST(sqlite_store, retention_finds_the_runs_and_failures_made_and_ended_before_the_cutoff) {
    using namespace std::chrono_literals;
    temp_dir dir;
    auto s = open_sqlite(dir, nullptr);
    auto ctx = tenant("t1");
    auto now = system_clock::instance().now();
    auto old = now - 10 * 24h, cutoff = now - 5 * 24h;
    std::map<std::string, std::string> runs, failures;  // name -> id
    auto run = [&](request_context const& c, std::string const& name, time_point made, std::optional<time_point> ended,
                   bool failed = false, std::optional<time_point> resolved = std::nullopt) {
        must(s->transact(c, [&](unit_of_work& uow) -> result<void> {
            auto p = active_provider(c, made);
            auto conn = active_connection(c, made, p);
            auto r = must(runs::integration_run::create(c, made, conn, "sms.send"));
            must(r.start(conn, false, made));
            failures::classification cls{failures::failure_category::validation, "http_422", "bad",
                                         failures::next_action::dead_letter, std::nullopt};
            if (ended) {
                must(r.record_attempt({1, failed ? runs::attempt_status::failed : runs::attempt_status::succeeded,
                                       std::nullopt, std::int64_t{failed ? 422 : 200}, 5, *ended}));
                if (failed)
                    must(r.fail(*ended, cls, std::nullopt));
                else
                    must(r.complete(*ended, std::nullopt, std::nullopt));
            }
            if (failed) {
                auto f = must(failures::integration_failure::record(c, made, failures::failure_source::run, r.id(), p.id(), cls));
                if (resolved) must(f.resolve(failures::source_outcome::dead_lettered, *resolved));
                failures[name] = f.id();
                must(uow.failures().save(f));
            }
            runs[name] = r.id();
            return uow.runs().save(r);
        }));
    };
    run(ctx, "old done", old, old + 1s);
    run(ctx, "old failed", old + 1ms, old + 2s, true, old + 3s);
    run(ctx, "old failure unresolved", old + 2ms, old + 2s, true);
    run(ctx, "old running", old + 3ms, std::nullopt);
    run(ctx, "old, ended after the cutoff", old + 4ms, cutoff + 1h, true, cutoff + 2h);
    run(ctx, "young", now, now, true, now);
    run(ctx, "young, stamped as ended long ago", now + 1ms, old + 5s, true, old + 6s);
    run(tenant("t2"), "other tenant", old, old + 1s, true, old + 1s);

    auto ended = must(storage::read_for(*s, ctx, [&](unit_of_work& uow) { return uow.runs().ended_before(cutoff, 10); }));
    std::vector<std::string> ids;
    for (auto const& r : ended) ids.push_back(r.id());
    EXPECT_EQ(ids, (std::vector<std::string>{runs["old done"], runs["old failed"], runs["old failure unresolved"]}));
    auto first = must(storage::read_for(*s, ctx, [&](unit_of_work& uow) { return uow.runs().ended_before(cutoff, 1); }));
    ASSERT_EQ(first.size(), 1u);
    EXPECT_EQ(first[0].id(), runs["old done"]);

    auto resolved = must(storage::read_for(*s, ctx, [&](unit_of_work& uow) { return uow.failures().ended_before(cutoff, 10); }));
    ASSERT_EQ(resolved.size(), 1u);
    EXPECT_EQ(resolved[0].id(), failures["old failed"]);

    // Once the cutoff passes their ids, the rows stamped back in time go too.
    auto later = must(storage::read_for(*s, ctx, [&](unit_of_work& uow) { return uow.runs().ended_before(now + 1h, 10); }));
    EXPECT_EQ(later.size(), 6u);  // all but the running one
    auto later_failures =
        must(storage::read_for(*s, ctx, [&](unit_of_work& uow) { return uow.failures().ended_before(now + 1h, 10); }));
    EXPECT_EQ(later_failures.size(), 5u) << "the unresolved one too: a dead letter nobody escalated";
}

}  // namespace
}  // namespace integration::testing
