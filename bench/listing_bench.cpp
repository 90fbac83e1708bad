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

}  // namespace

BENCHMARK_MAIN();
