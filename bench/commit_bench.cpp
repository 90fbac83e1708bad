// Durable commits on one SQLite file (WAL, synchronous=FULL):
//   raw_sqlite_single_row   - baseline: raw sqlite3, one INSERT per transaction, one fsync each
//   store_single_row        - the store with group commit off: one unit of work per fsync
//   store_grouped/threads:N - N threads committing concurrently; the writer shares one fsync
//   store_recorded_runs     - what the host's run route records: a finished run, its two small
//                             bodies and its outbox event per unit, 32 callers, a relay marking
//                             the events published each second; `cpu_us` is the whole process's
//                             CPU per run
// Each row carries a ~1 KiB payload. Run: commit_bench [--benchmark_min_time=2]

#include <integration/core/id.hpp>
#include <integration/domain/run.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>

#include "sqlite_baseline.hpp"
#include "store_mmap.hpp"

#include <benchmark/benchmark.h>

#include <sys/resource.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <thread>
#include <memory>
#include <string>

using namespace integration;

namespace {

std::filesystem::path bench_dir() {
    auto d = std::filesystem::temp_directory_path() / "integration-commit-bench";
    std::filesystem::create_directories(d);
    return d;
}

std::string const payload(1024, 'x');

void raw_sqlite_single_row(benchmark::State& state) {
    integration::bench::raw_sqlite_single_row(state, bench_dir() / "raw.db", payload);
}
BENCHMARK(raw_sqlite_single_row)->UseRealTime();

// One connection and one Active... run per commit: a realistic unit of work (run row + outbox-free).
struct fixture {
    std::unique_ptr<storage::store> store;
    std::optional<connections::integration_connection> connection;
};

std::unique_ptr<fixture> make_fixture(bool grouped) {
    auto path = (bench_dir() / (grouped ? "grouped.db" : "single.db")).string();
    for (auto ext : {"", "-wal", "-shm"}) std::filesystem::remove(path + ext);
    auto f = std::make_unique<fixture>();
    f->store = storage::open_sqlite_store({.path = path, .mmap_bytes = bench::store_mmap_bytes(), .group_commit = grouped}).value();
    auto ctx = request_context::for_tenant("bench");
    auto now = system_clock::instance().now();
    f->store
        ->transact(ctx,
                   [&](storage::unit_of_work& uow) -> result<void> {
                       providers::provider_spec spec;
                       spec.key = "bench";
                       spec.display_name = "Bench";
                       spec.base_url = "https://bench.example";
                       auto p = providers::integration_provider::register_new(ctx, now, spec).value();
                       p.activate(1).value();
                       if (auto r = uow.providers().save(p); !r) return r;
                       auto c = connections::integration_connection::create(
                                    ctx, now, p, {.project_id = "p", .display_name = "c", .credential_id = new_id(id_prefix::credential, now)})
                                    .value();
                       f->connection = c;
                       return uow.connections().save(c);
                   })
        .value();
    return f;
}

void commit_one(fixture& f, request_context const& ctx, durability d = durability::immediate) {
    auto r = f.store->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
        auto run = runs::integration_run::create(ctx, system_clock::instance().now(), *f.connection, payload.substr(0, 100));
        if (!run) return run.error();
        run->set_request_ref(payload).value();
        return uow.runs().save(*run);
    }, d);
    if (!r) throw std::runtime_error(r.error().message());
}

void store_single_row(benchmark::State& state) {
    auto f = make_fixture(false);
    auto ctx = request_context::for_tenant("bench");
    for (auto _ : state) commit_one(*f, ctx);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(store_single_row)->UseRealTime();

// The same unit committed with durability::deferred: visible at once, fsynced within 10 ms.
void store_deferred(benchmark::State& state) {
    auto f = make_fixture(false);
    auto ctx = request_context::for_tenant("bench");
    for (auto _ : state) commit_one(*f, ctx, durability::deferred);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(store_deferred)->UseRealTime();

// What the write-behind recorder commits: 256 finished runs (one attempt, one outbox event each)
// in one deferred unit. The time per item is the writer's cost of recording one run.
void store_batched_runs(benchmark::State& state) {
    auto f = make_fixture(false);
    auto ctx = request_context::for_tenant("bench");
    auto conn = *f->connection;  // runs start only on an Active, Healthy connection
    conn.record_health({health_status::healthy, "ok"}, system_clock::instance().now()).value();
    conn.activate(true, system_clock::instance().now()).value();
    std::vector<runs::integration_run> batch;
    for (auto _ : state) {
        state.PauseTiming();
        batch.clear();
        auto now = system_clock::instance().now();
        for (int i = 0; i < 256; ++i) {
            auto run = runs::integration_run::create(ctx, now, conn, "sms.send").value();
            run.start(conn, false, now).value();
            run.record_attempt({1, runs::attempt_status::succeeded, std::nullopt, 200, 12, now}).value();
            run.complete(now, "SM" + std::to_string(i), "blob://bench/runs/" + run.id() + "/response").value();
            batch.push_back(std::move(run));
        }
        state.ResumeTiming();
        auto r = f->store->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            for (auto& run : batch)
                if (auto s = uow.runs().save(run); !s) return s;
            return {};
        }, durability::deferred);
        if (!r) state.SkipWithError(r.error().message().c_str());
    }
    state.SetItemsProcessed(state.iterations() * 256);
}
BENCHMARK(store_batched_runs)->UseRealTime();

std::unique_ptr<fixture> shared;

void store_grouped(benchmark::State& state) {
    if (state.thread_index() == 0) shared = make_fixture(true);
    auto ctx = request_context::for_tenant("bench");
    for (auto _ : state) commit_one(*shared, ctx);
    state.SetItemsProcessed(state.iterations());
    if (state.thread_index() == 0) {
        // Teardown happens after every thread left the loop (benchmark's barrier).
    }
}
BENCHMARK(store_grouped)->Threads(1)->Threads(8)->Threads(32)->Threads(128)->UseRealTime();

double process_cpu_seconds() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    auto s = [](timeval t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
    return s(u.ru_utime) + s(u.ru_stime);
}

std::unique_ptr<fixture> recorded;
std::atomic<bool> relay_stop;
std::thread relay;
double cpu_at_start = 0;

// Each caller records what the host's run route records for one governed run, the way it does:
// built off the writer (`prepare_run`), saved by `save_prepared` in a shared group commit,
// answered once the commit is durable. A relay thread marks the outbox rows published.
void store_recorded_runs(benchmark::State& state) {
    if (state.thread_index() == 0) {
        recorded = make_fixture(true);
        auto& c = *recorded->connection;
        auto now = system_clock::instance().now();
        c.record_health({health_status::healthy, "ok"}, now).value();
        c.activate(true, now).value();
        relay_stop = false;
        // As the host's relay does by default: drains in batches of 256 every second.
        relay = std::thread([] {
            while (!relay_stop) {
                for (;;) {
                    auto rows = recorded->store->pending_event_rows(256);
                    if (!rows) throw std::runtime_error(rows.error().message());
                    std::vector<std::int64_t> done;
                    for (auto const& r : *rows) done.push_back(r.sequence);
                    if (!done.empty()) recorded->store->mark_published(done, system_clock::instance().now()).value();
                    if (done.size() < 256) break;
                }
                for (int i = 0; i < 100 && !relay_stop; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
            }
        });
        cpu_at_start = process_cpu_seconds();
    }
    auto ctx = request_context::for_tenant("bench");
    std::string const request = R"({"to":"+15550001","body":"hello"})", response = R"({"id":"msg-1"})";
    for (auto _ : state) {
        auto now = system_clock::instance().now();
        auto run = runs::integration_run::create(ctx, now, *recorded->connection, "sms.send").value();
        run.start(*recorded->connection, false, now).value();
        run.set_request_ref(storage::stored_run_body_ref(ctx.tenant_id, run.id(), storage::run_body::request)).value();
        run.record_attempt({1, runs::attempt_status::succeeded, std::nullopt, 200, 1, now}).value();
        run.complete(now, std::nullopt, storage::stored_run_body_ref(ctx.tenant_id, run.id(), storage::run_body::response)).value();
        auto p = std::make_shared<storage::prepared_run>(storage::prepare_run(std::move(run), ctx, now, recorded->store->event_source()));
        p->request_body = request;
        p->response_body = response;
        std::promise<result<void>> saved;
        recorded->store->transact_async_checks_first(
            ctx, [p](storage::unit_of_work& uow) { return uow.runs().save_prepared(*p); }, durability::immediate,
            [&saved](result<void> r) { saved.set_value(std::move(r)); });
        if (auto r = saved.get_future().get(); !r) state.SkipWithError(r.error().message().c_str());
    }
    state.SetItemsProcessed(state.iterations());
    if (state.thread_index() == 0) {
        // The other callers may still be in their last unit; the figure is per run all the same.
        state.counters["cpu_us"] = benchmark::Counter((process_cpu_seconds() - cpu_at_start) * 1e6 / static_cast<double>(state.iterations() * static_cast<std::uint64_t>(state.threads())));
        relay_stop = true;
        relay.join();
    }
}
BENCHMARK(store_recorded_runs)->Threads(32)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
