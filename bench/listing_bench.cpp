// Reads whose cost must follow what they return, not what the tenant holds, on one store file
// with 100,000 runs and 100,000 deliveries (half inbound, half outbound) of one tenant:
//   store_retention_nothing_old      - runs().ended_before(180 days ago): a retention sweep that
//                                       finds nothing old enough
//   raw_sqlite_retention_unbounded   - raw sqlite3, the same question asked without the id bound
//                                       (what the store asked before session 19)
//   raw_sqlite_retention_bounded     - raw sqlite3, with the bound: the floor for the store
//   store_deliveries_page            - deliveries().list({}, 50): the first page of both directions
//   raw_sqlite_deliveries_sorted     - raw sqlite3, one condition, sorted (the store before)
//   raw_sqlite_deliveries_merged     - raw sqlite3, the two directions merged: the floor
// and, on another file, a retention sweep of an outbox holding 100 tenants' published events
// (1,000 each, in the order they were committed, interleaved):
//   store_outbox_trim                - remove_published until done, as the retention worker calls it
//   raw_sqlite_outbox_trim_per_tenant - raw sqlite3, the statement the store ran before session 32,
//                                       500 rows at a time, tenant by tenant
//   raw_sqlite_outbox_delete_all     - raw sqlite3, one DELETE of every old row: the floor
// Run: listing_bench [--benchmark_min_time=1]

#include <integration/backends/sqlite/sqlite_store.hpp>
#include <integration/core/id.hpp>
#include <integration/domain/delivery.hpp>
#include <integration/domain/run.hpp>
#include <integration/domain/subscription.hpp>

#include <benchmark/benchmark.h>
#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

using namespace integration;

namespace {

constexpr int rows = 100'000;
auto const ctx = request_context::for_tenant("bench");
auto const cutoff = system_clock::instance().now() - std::chrono::hours(24 * 180);

template <class T>
T must(result<T> r) {
    if (!r) throw std::runtime_error(r.error().message());
    return std::move(*r);
}
void must(result<void> r) {
    if (!r) throw std::runtime_error(r.error().message());
}

std::string const& store_path() {
    static std::string const path = [] {
        auto d = std::filesystem::temp_directory_path() / "integration-listing-bench";
        std::filesystem::create_directories(d);
        return (d / "listing.db").string();
    }();
    return path;
}

// The store, filled once per process (untimed): every run young, so none is old enough.
storage::store& filled_store() {
    static std::unique_ptr<storage::store> store = [] {
        for (auto ext : {"", "-wal", "-shm"}) std::filesystem::remove(store_path() + ext);
        auto s = must(storage::open_sqlite_store({.path = store_path()}));
        auto now = system_clock::instance().now();
        providers::provider_spec spec;
        spec.key = "bench";
        spec.display_name = "Bench";
        spec.base_url = "https://bench.example";
        auto p = must(providers::integration_provider::register_new(ctx, now, spec));
        must(p.activate(1));
        auto c = must(connections::integration_connection::create(
            ctx, now, p, {.project_id = "p", .display_name = "c", .credential_id = new_id(id_prefix::credential, now)}));
        must(c.record_health({health_status::healthy, "ok"}, now));
        must(c.activate(true, now));
        auto sub = must(webhooks::webhook_subscription::create(
            ctx, now, {"p", "order.*", "https://hooks.example.com", "vault://local/bench/s?version=1", {}, {}}));
        must(s->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            must(uow.providers().save(p));
            must(uow.connections().save(c));
            return uow.subscriptions().save(sub);
        }));
        for (int done = 0; done < rows; done += 1000) {
            must(s->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
                for (int i = done; i < done + 1000; ++i) {
                    auto run = must(runs::integration_run::create(ctx, now, c, "sms.send"));
                    must(run.start(c, false, now));
                    must(run.record_attempt({1, runs::attempt_status::succeeded, std::nullopt, 200, 1, now}));
                    must(run.complete(now, std::nullopt, std::nullopt));
                    must(uow.runs().save(run));
                    if (i % 2) {
                        auto d = must(webhooks::webhook_delivery::inbound(ctx, now, c.id(), p.id(), "gh-" + std::to_string(i),
                                                                          "github.push", std::nullopt, std::string("hash")));
                        must(d.accept({.signature_valid = true, .tenant_resolved = true}, now));
                        must(uow.deliveries().save(d));
                    } else {
                        auto d = must(webhooks::webhook_delivery::outbound(ctx, now, sub, "order.paid",
                                                                           "evt-" + std::to_string(i), {}));
                        must(d.record_success({0, 200, 5, {}, {}, now}));
                        must(uow.deliveries().save(d));
                    }
                }
                return result<void>{};
            }, durability::deferred));
        }
        return s;
    }();
    return *store;
}

void store_retention_nothing_old(benchmark::State& state) {
    auto& s = filled_store();
    for (auto _ : state) {
        auto old = must(storage::read_for(s, ctx, [](storage::unit_of_work& uow) { return uow.runs().ended_before(cutoff, 500); }));
        if (!old.empty()) state.SkipWithError("a young run was found old");
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(store_retention_nothing_old)->UseRealTime();

void store_deliveries_page(benchmark::State& state) {
    auto& s = filled_store();
    for (auto _ : state) {
        auto page = must(storage::read_for(s, ctx, [](storage::unit_of_work& uow) { return uow.deliveries().list({}, {.limit = 50}); }));
        if (page.items.size() != 50) state.SkipWithError("a page of 50 was expected");
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(store_deliveries_page)->UseRealTime();

// Raw sqlite3 on the store's file, whole rows as the store reads them: ?1 the tenant, ?2 the
// retention cutoff, ?3 `bound_id`, as many as the statement takes.
void raw_query(benchmark::State& state, char const* sql, std::string const& bound_id = {}) {
    filled_store();
    sqlite3* db = nullptr;
    sqlite3_open_v2(store_path().c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) != SQLITE_OK) {
        state.SkipWithError(sqlite3_errmsg(db));
        sqlite3_close(db);
        return;
    }
    for (auto _ : state) {
        sqlite3_bind_text(st, 1, "bench", -1, SQLITE_STATIC);
        if (sqlite3_bind_parameter_count(st) >= 2) sqlite3_bind_int64(st, 2, to_unix_ms(cutoff));
        if (!bound_id.empty()) sqlite3_bind_text(st, 3, bound_id.c_str(), -1, SQLITE_STATIC);
        int n = 0;
        while (sqlite3_step(st) == SQLITE_ROW) ++n;
        sqlite3_reset(st);
        benchmark::DoNotOptimize(n);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    state.SetItemsProcessed(state.iterations());
}

void raw_sqlite_retention_unbounded(benchmark::State& state) {
    raw_query(state, "SELECT * FROM runs WHERE tenant_id = ?1 AND (status IN ('Completed', 'Failed') AND completed_at < ?2) "
                     "ORDER BY run_id LIMIT 500");
}
BENCHMARK(raw_sqlite_retention_unbounded)->UseRealTime();

void raw_sqlite_retention_bounded(benchmark::State& state) {
    raw_query(state,
              "SELECT * FROM runs WHERE tenant_id = ?1 AND (status IN ('Completed', 'Failed') AND completed_at < ?2 AND "
              "run_id < ?3) ORDER BY run_id LIMIT 500",
              first_id_at(id_prefix::run, cutoff));
}
BENCHMARK(raw_sqlite_retention_bounded)->UseRealTime();

void raw_sqlite_deliveries_sorted(benchmark::State& state) {
    raw_query(state, "SELECT * FROM deliveries WHERE tenant_id = ?1 ORDER BY delivery_id LIMIT 51");
}
BENCHMARK(raw_sqlite_deliveries_sorted)->UseRealTime();

void raw_sqlite_deliveries_merged(benchmark::State& state) {
    raw_query(state, "SELECT * FROM deliveries WHERE tenant_id = ?1 AND (direction = 'Inbound') UNION ALL "
                     "SELECT * FROM deliveries WHERE tenant_id = ?1 AND (direction = 'Outbound') ORDER BY delivery_id LIMIT 51");
}
BENCHMARK(raw_sqlite_deliveries_merged)->UseRealTime();

// ---- the outbox's retention -----------------------------------------------------------------------

constexpr int outbox_tenants = 100;
constexpr int outbox_rows_per_tenant = 1'000;

std::string const& outbox_path() {
    static std::string const path = [] {
        auto d = std::filesystem::temp_directory_path() / "integration-listing-bench";
        std::filesystem::create_directories(d);
        return (d / "outbox.db").string();
    }();
    return path;
}

// The store's file (schema and all), its outbox filled through raw sqlite3 with rows published a
// year ago, tenants interleaved as their events commit, and one pending row last.
void fill_outbox() {
    sqlite3* db = nullptr;
    sqlite3_open(outbox_path().c_str(), &db);
    sqlite3_exec(db, "PRAGMA busy_timeout = 5000; DELETE FROM outbox; BEGIN", nullptr, nullptr, nullptr);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db,
                       "INSERT INTO outbox (event_id, tenant_id, aggregate_type, aggregate_id, aggregate_version, "
                       "event_type, occurred_at, envelope, published_at) VALUES (?1, ?2, 'Run', ?1, 1, 'RunCompleted', ?3, "
                       "'{\"data\":{\"status\":\"Completed\",\"attempts\":1}}', ?4)",
                       -1, &st, nullptr);
    auto const old = to_unix_ms(system_clock::instance().now() - std::chrono::hours(24 * 365));
    for (int i = 0; i <= outbox_tenants * outbox_rows_per_tenant; ++i) {
        auto id = "evt-" + std::to_string(i);
        auto tenant = "t" + std::to_string(i % outbox_tenants);
        sqlite3_bind_text(st, 1, id.c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, tenant.c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, old);
        if (i < outbox_tenants * outbox_rows_per_tenant) sqlite3_bind_int64(st, 4, old + i);
        else sqlite3_bind_null(st, 4);  // the newest row, pending
        sqlite3_step(st);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
    sqlite3_close(db);
}

storage::store& outbox_store() {
    static std::unique_ptr<storage::store> store = [] {
        for (auto ext : {"", "-wal", "-shm"}) std::filesystem::remove(outbox_path() + ext);
        return must(storage::open_sqlite_store({.path = outbox_path()}));
    }();
    return *store;
}

auto const outbox_cutoff = [] { return system_clock::instance().now() - std::chrono::hours(24 * 7); };

void store_outbox_trim(benchmark::State& state) {
    auto& s = outbox_store();
    for (auto _ : state) {
        state.PauseTiming();
        fill_outbox();
        state.ResumeTiming();
        std::size_t removed = 0;
        for (std::int64_t after = 0;;) {
            auto t = must(s.remove_published(outbox_cutoff(), 500, after));
            removed += t.removed;
            if (t.done) break;
            after = t.next;
        }
        if (removed != outbox_tenants * outbox_rows_per_tenant) state.SkipWithError("not every old row went");
    }
    state.SetItemsProcessed(state.iterations() * outbox_tenants * outbox_rows_per_tenant);
}
BENCHMARK(store_outbox_trim)->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(3);

// Runs `sql` with ?1 a tenant (each in turn when `per_tenant`), ?2 the cutoff, ?3 500, until it
// deletes fewer than 500 rows.
void raw_outbox_delete(benchmark::State& state, char const* sql, bool per_tenant) {
    outbox_store();
    for (auto _ : state) {
        state.PauseTiming();
        fill_outbox();
        state.ResumeTiming();
        sqlite3* db = nullptr;
        sqlite3_open(outbox_path().c_str(), &db);
        sqlite3_exec(db, "PRAGMA busy_timeout = 5000", nullptr, nullptr, nullptr);
        sqlite3_stmt* st = nullptr;
        sqlite3_prepare_v2(db, sql, -1, &st, nullptr);
        for (int t = 0; t < (per_tenant ? outbox_tenants : 1); ++t) {
            auto tenant = "t" + std::to_string(t);
            while (true) {
                sqlite3_bind_text(st, 1, tenant.c_str(), -1, SQLITE_TRANSIENT);
                sqlite3_bind_int64(st, 2, to_unix_ms(outbox_cutoff()));
                sqlite3_bind_int64(st, 3, 500);
                sqlite3_step(st);
                sqlite3_reset(st);
                if (sqlite3_changes(db) < 500) break;
            }
        }
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
    state.SetItemsProcessed(state.iterations() * outbox_tenants * outbox_rows_per_tenant);
}

void raw_sqlite_outbox_trim_per_tenant(benchmark::State& state) {
    raw_outbox_delete(state,
                      "DELETE FROM outbox WHERE sequence IN (SELECT sequence FROM outbox WHERE sequence < (SELECT COALESCE("
                      "(SELECT sequence FROM outbox WHERE published_at >= ?2 ORDER BY sequence LIMIT 1), (SELECT MAX(sequence) "
                      "FROM outbox))) AND tenant_id = ?1 AND published_at < ?2 ORDER BY sequence LIMIT ?3)",
                      true);
}
BENCHMARK(raw_sqlite_outbox_trim_per_tenant)->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(1);

void raw_sqlite_outbox_delete_all(benchmark::State& state) {
    raw_outbox_delete(state, "DELETE FROM outbox WHERE ?1 <> '' AND published_at < ?2 AND ?3 > 0 AND sequence < (SELECT MAX(sequence) FROM outbox)",
                      false);
}
BENCHMARK(raw_sqlite_outbox_delete_all)->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace

BENCHMARK_MAIN();
