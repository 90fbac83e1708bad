// Durable inbound webhook receives on one SQLite file (WAL, synchronous=FULL):
//   raw_sqlite_single_row      - baseline: raw sqlite3, one INSERT of the same body per transaction,
//                                one fsync each
//   inbound_receive/threads:N  - N callers of inbound_gateway::receive, each with its own signed
//                                GitHub-style requests (unique X-GitHub-Delivery, ~1 KiB body):
//                                verify, dedupe, record the delivery, its payload (in the store) and
//                                its canonical event. Every receive answers only once its delivery is
//                                durable; concurrent ones share the store's group commit.
//   inbound_receive_async/threads:2 - the same receives through the asynchronous `receive`, 32 in
//                                flight per thread (64 concurrent receives on two threads, as an
//                                event-loop server such as the host holds them): no thread waits
//                                for a commit, so no wake-up and context switch per receive.
// Items are accepted deliveries. The counters: `units_per_commit`, how many receives one group
// commit carried; `units_per_fsync`, how many one WAL sync made durable (the store's sync thread
// syncs while the writer commits the next batch); `kib_written_per_unit`, the process's bytes
// written to storage (`/proc/self/io` write_bytes: WAL frames, checkpoint copies) per receive;
// `writer_us_per_unit` and `sync_us_per_unit`, the CPU time of the store's writer and sync
// threads (`/proc/self/task/<tid>/schedstat`) per receive.
// Run: inbound_receive_bench [--benchmark_min_time=3]

#include <integration/backends/local_vault/local_secret_store.hpp>
#include <integration/backends/sqlite/sqlite_blob_store.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>
#include <integration/services/inbound_gateway.hpp>

#include "backends/sqlite/wal_sync.hpp"  // the store's WAL sync count (private to the backend)
#include "sqlite_baseline.hpp"
#include "support/hmac.hpp"

#include <benchmark/benchmark.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

using namespace integration;

namespace {

std::filesystem::path bench_dir() {
    auto d = std::filesystem::temp_directory_path() / "integration-inbound-bench";
    std::filesystem::create_directories(d);
    return d;
}

std::string const secret = "bench-inbound-secret";

/** A pull_request webhook of about 1 KiB, as GitHub sends it (abridged). */
std::string body_of(std::string const& id) {
    std::string body = R"({"action":"opened","number":42,"delivery":")" + id +
                       R"(","pull_request":{"title":"Bench","state":"open","user":{"login":"octocat","id":1},"body":")";
    body += std::string(1024 - body.size() - 40, 'b');
    body += R"("},"repository":{"full_name":"o/r"}})";
    return body;
}

void raw_sqlite_single_row(benchmark::State& state) {
    integration::bench::raw_sqlite_single_row(state, bench_dir() / "raw.db", body_of("baseline"));
}
BENCHMARK(raw_sqlite_single_row)->UseRealTime();

struct world {
    std::unique_ptr<storage::store> store;
    std::unique_ptr<blobs::blob_store> blobs;
    std::unique_ptr<credentials::secret_store> vault;
    std::unique_ptr<webhooks::inbound_gateway> gateway;
    std::string connection_id;
    std::atomic<std::int64_t> refused{0};
};

std::unique_ptr<world> make_world() {
    auto dir = bench_dir() / "receive";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    auto w = std::make_unique<world>();
    w->store = storage::open_sqlite_store({.path = (dir / "integration.db").string(), .synchronous_full = true}).value();
    w->blobs = blobs::open_sqlite_blob_store({.path = (dir / "blobs.db").string()}).value();
    w->vault = credentials::open_local_secret_store(
                   {.path = (dir / "secrets.db").string(), .key_file = (dir / "master.key").string(), .key_env = ""})
                   .value();
    w->gateway = std::make_unique<webhooks::inbound_gateway>(*w->store, *w->vault, *w->blobs, system_clock::instance());
    auto ctx = request_context::for_tenant("bench");
    auto now = system_clock::instance().now();
    w->store
        ->transact(ctx,
                   [&](storage::unit_of_work& uow) -> result<void> {
                       providers::provider_spec spec;
                       spec.key = "github";
                       spec.display_name = "GitHub";
                       spec.base_url = "https://api.github.com";
                       auto p = providers::integration_provider::register_new(ctx, now, spec).value();
                       p.activate(1).value();
                       if (auto r = uow.providers().save(p); !r) return r;
                       auto c = connections::integration_connection::create(ctx, now, p, {.project_id = "p", .display_name = "gh"})
                                    .value();
                       w->connection_id = c.id();
                       return uow.connections().save(c);
                   })
        .value();
    w->gateway->register_endpoint(ctx, w->connection_id, webhooks::inbound_scheme::github, secret_bytes(std::string_view(secret)))
        .value();
    return w;
}

/** The process's `write_bytes` so far. */
double bytes_written() {
    std::ifstream io("/proc/self/io");
    std::string key;
    double value = 0;
    while (io >> key >> value)
        if (key == "write_bytes:") return value;
    return 0;
}

/** The CPU seconds so far of the process's thread named `name` (0 when there is none). */
double thread_cpu_s(std::string const& name) {
    for (auto const& task : std::filesystem::directory_iterator("/proc/self/task")) {
        std::ifstream comm(task.path() / "comm");
        std::string n;
        std::getline(comm, n);
        if (n != name) continue;
        std::ifstream stat(task.path() / "schedstat");
        double ns = 0;
        stat >> ns;
        return ns / 1e9;
    }
    return 0;
}

std::unique_ptr<world> shared;
std::atomic<std::uint64_t> commits_before{0}, units_before{0}, syncs_before{0};
double written_before = 0, writer_before = 0, sync_before = 0;

/** Opens a new world and notes the counters before the run (thread 0 only). */
void start(benchmark::State&) {
    shared = make_world();
    auto s = storage::sqlite_store_stats(*shared->store).value();
    commits_before = s.commits;
    units_before = s.units;
    syncs_before = storage::sqlite::wal_syncs(*shared->store);
    written_before = bytes_written();
    writer_before = thread_cpu_s("integ-sql-write");
    sync_before = thread_cpu_s("integ-sql-sync");
}

/** What a vendor sends: a unique delivery id and a body signed with the shared secret. */
template <typename Send>
void signed_request(int thread, std::int64_t n, Send send) {
    auto id = std::to_string(thread) + "-" + std::to_string(n);
    auto body = body_of(id);
    auto signature = "sha256=" + integration::testing::hmac_sha256_hex(secret, body);
    webhooks::header_field headers[] = {{"X-GitHub-Delivery", id},
                                        {"X-GitHub-Event", "pull_request"},
                                        {"X-Hub-Signature-256", signature},
                                        {"Content-Type", "application/json"}};
    send(id, webhooks::inbound_request{headers, body, "https://hooks.example/webhooks/inbound/c", "application/json"});
}

/** Items, and the store's counters per receive (thread 0 reports for all: its counters are the
 *  ones shown after the threads' barrier). */
void report(benchmark::State& state) {
    state.SetItemsProcessed(state.iterations());
    if (state.thread_index() != 0) return;
    auto s = storage::sqlite_store_stats(*shared->store).value();
    auto commits = static_cast<double>(s.commits - commits_before);
    state.counters["units_per_commit"] = commits > 0 ? static_cast<double>(s.units - units_before) / commits : 0;
    auto syncs = static_cast<double>(storage::sqlite::wal_syncs(*shared->store) - syncs_before);
    state.counters["units_per_fsync"] = syncs > 0 ? static_cast<double>(s.units - units_before) / syncs : 0;
    auto units = static_cast<double>(s.units - units_before);
    if (units > 0) {
        state.counters["kib_written_per_unit"] = (bytes_written() - written_before) / 1024 / units;
        state.counters["writer_us_per_unit"] = (thread_cpu_s("integ-sql-write") - writer_before) * 1e6 / units;
        state.counters["sync_us_per_unit"] = (thread_cpu_s("integ-sql-sync") - sync_before) * 1e6 / units;
    }
    if (shared->refused > 0) state.SkipWithError("some receives were not accepted");
}

void inbound_receive(benchmark::State& state) {
    if (state.thread_index() == 0) start(state);
    std::int64_t n = 0;
    for (auto _ : state)
        signed_request(state.thread_index(), n++, [](std::string const&, webhooks::inbound_request const& req) {
            auto out = shared->gateway->receive(shared->connection_id, req);
            if (!out || out->outcome != webhooks::inbound_outcome::kind::accepted) ++shared->refused;
        });
    report(state);
}
BENCHMARK(inbound_receive)->Threads(1)->Threads(64)->UseRealTime();

void inbound_receive_async(benchmark::State& state) {
    if (state.thread_index() == 0) start(state);
    struct window {
        std::mutex m;
        std::condition_variable cv;
        int in_flight = 0;
    } w;
    constexpr int depth = 32;
    auto wait_below = [&](int limit) {
        std::unique_lock lock(w.m);
        w.cv.wait(lock, [&] { return w.in_flight < limit; });
    };
    std::int64_t n = 0;
    for (auto _ : state) {
        wait_below(depth);
        {
            std::lock_guard lock(w.m);
            ++w.in_flight;
        }
        signed_request(state.thread_index(), n++, [&](std::string const&, webhooks::inbound_request const& req) {
            shared->gateway->receive(shared->connection_id, req, [&w](result<webhooks::inbound_outcome> out) {
                if (!out || out->outcome != webhooks::inbound_outcome::kind::accepted) ++shared->refused;
                std::lock_guard lock(w.m);
                if (--w.in_flight < depth) w.cv.notify_one();
            });
        });
    }
    wait_below(1);  // every receive of this thread is durable
    report(state);
}
BENCHMARK(inbound_receive_async)->Threads(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
