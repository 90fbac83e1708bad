// A governed run against a local keep-alive server vs a raw libcurl request to the same server,
// in the same process. The run resolves an API-key credential, checks egress with a pinned
// address, takes a rate-limit token, passes the breaker, sends through the pooled libcurl
// transport, classifies the answer and durably records the run (two commits: Running, then
// Completed) in SQLite with synchronous=FULL. Concurrent runs share fsyncs through group commit.

#include <integration/backends/sqlite/sqlite_blob_store.hpp>
#include <integration/backends/filesystem/filesystem_blob_store.hpp>
#include <integration/backends/curl/curl_transport.hpp>
#include <integration/services/credential_service.hpp>
#include <integration/backends/local_vault/local_secret_store.hpp>
#include <integration/services/run_service.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>

#include "keep_alive_receiver.hpp"
#include "store_mmap.hpp"

#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

using namespace integration;

namespace {

bench::keep_alive_receiver& server() {
    static bench::keep_alive_receiver s("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    return s;
}

std::size_t discard(char*, std::size_t size, std::size_t n, void*) { return size * n; }

void raw_curl(benchmark::State& state) {
    CURL* h = curl_easy_init();
    auto url = "http://127.0.0.1:" + std::to_string(server().port()) + "/v1/accounts/AC1/messages";
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    for (auto _ : state)
        if (curl_easy_perform(h) != CURLE_OK) state.SkipWithError("curl failed");
    curl_easy_cleanup(h);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(raw_curl)->Threads(1)->Threads(16)->UseRealTime();

// The library's libcurl transport alone (pooled handle, pinned address, two headers): what the
// transport adds to raw libcurl before any governance.
void curl_transport(benchmark::State& state, bool pinned) {
    static auto transport = http::make_curl_transport();
    http::request r{.method = "GET", .url = "http://api.vendor.test:" + std::to_string(server().port()) + "/v1/accounts/AC1/messages",
                    .headers = {{"Authorization", "Bearer k"}, {"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}};
    if (pinned) r.pin = http::pinned_address{"api.vendor.test", server().port(), "127.0.0.1"};
    else r.url = "http://127.0.0.1:" + std::to_string(server().port()) + "/v1/accounts/AC1/messages";
    for (auto _ : state)
        if (auto res = transport->send(r); !res || res->status != 200) state.SkipWithError("send failed");
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(curl_transport, pinned, true)->Threads(1)->Threads(16)->UseRealTime();
BENCHMARK_CAPTURE(curl_transport, unpinned, false)->Threads(1)->UseRealTime();

/** Answers every request at once, in memory: isolates the CPU cost of the governed path. */
class instant_transport final : public http::transport {
public:
    result<http::response> send(http::request const&) override { return http::response{200, {}, "ok"}; }
};

struct world {
    std::filesystem::path dir = std::filesystem::temp_directory_path() / "integration-run-bench";
    std::unique_ptr<storage::store> store;
    std::unique_ptr<credentials::local_secret_store> vault;
    std::optional<credentials::fingerprinter> fp;
    std::unique_ptr<http::transport> transport = http::make_curl_transport();
    std::unique_ptr<credentials::credential_service> creds;
    std::unique_ptr<blobs::blob_store> blobs;
    net::static_resolver dns;
    std::unique_ptr<runs::run_service> runs;
    request_context ctx = request_context::for_tenant("bench");
    std::string connection_id;

    world(durability recording, bool sqlite_blobs, bool write_behind, bool in_memory_vendor = false) {
        if (in_memory_vendor) transport = std::make_unique<instant_transport>();
        std::filesystem::remove_all(dir);
        std::filesystem::create_directories(dir);
        store = storage::open_sqlite_store({.path = (dir / "i.db").string(), .mmap_bytes = bench::store_mmap_bytes()}).value();
        vault = credentials::open_local_secret_store({.path = (dir / "s.db").string(), .key_file = (dir / "k").string(), .key_env = ""}).value();
        fp.emplace(credentials::fingerprinter::load_or_create((dir / "fp").string()).value());
        creds = std::make_unique<credentials::credential_service>(*store, *vault, *fp, system_clock::instance(), *transport,
                                                                  net::egress_policy{}, dns);
        blobs = sqlite_blobs ? blobs::open_sqlite_blob_store({.path = (dir / "blobs.db").string()}).value()
                             : blobs::open_filesystem_blob_store((dir / "blobs").string()).value();
        dns.add("api.vendor.test", {*net::ip_address::parse("127.0.0.1")});
        auto now = system_clock::instance().now();
        std::string provider_id;
        store->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
                 providers::provider_spec spec;
                 spec.key = "vendor";
                 spec.display_name = "Vendor";
                 spec.base_url = "http://api.vendor.test:" + std::to_string(server().port());
                 spec.capabilities = {"sms.send"};
                 auto p = providers::integration_provider::register_new(ctx, now, spec).value();
                 p.activate(1).value();
                 auto c = providers::external_api_client::register_new(
                              ctx, now, p, {.assembly_name = "Bench.Client", .version = "1.0.0", .capabilities = {"sms.send"},
                                            .operations = {{"sms.send", "GET", "/v1/accounts/{account}/messages"}}})
                              .value();
                 c.activate().value();
                 provider_id = p.id();
                 if (auto r = uow.providers().save(p); !r) return r;
                 return uow.api_clients().save(c);
             }).value();
        auto cred = creds->create(ctx, {.provider_id = provider_id, .secret = secret_bytes("k")}).value();
        store->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
                 auto p = uow.providers().find(provider_id).value();
                 auto c = connections::integration_connection::create(ctx, now, p, {.project_id = "p", .display_name = "c", .credential_id = cred.id()}).value();
                 c.record_health({health_status::healthy, "ok"}, now).value();
                 c.activate(true, now).value();
                 connection_id = c.id();
                 return uow.connections().save(c);
             }).value();
        runs = std::make_unique<runs::run_service>(*store, *creds, *blobs, *transport,
                                                   net::egress_policy{.allow = {net::cidr::parse("127.0.0.0/8").value()}}, dns,
                                                   system_clock::instance(), runs::run_service_options{.recording = recording, .write_behind = write_behind});
    }
};

std::unique_ptr<world> shared;

void governed_run(benchmark::State& state, durability recording, bool sqlite_blobs, bool write_behind = false,
                  bool in_memory_vendor = false) {
    if (state.thread_index() == 0) shared = std::make_unique<world>(recording, sqlite_blobs, write_behind, in_memory_vendor);
    runs::execute_request r{shared ? shared->connection_id : "", "sms.send", {.path_params = {{"account", "AC1"}}}, {}};
    for (auto _ : state) {
        r.connection_id = shared->connection_id;
        auto out = shared->runs->execute(shared->ctx, r);
        if (!out || out->run.status() != runs::run_status::completed) state.SkipWithError("run failed");
    }
    state.SetItemsProcessed(state.iterations());
    // Write-behind: the timed loop ends when the last answer arrived; the records are written
    // after it, so the run also counts the time of the final flush.
    if (state.thread_index() == 0 && write_behind && !shared->runs->flush()) state.SkipWithError("records lost");
}
BENCHMARK_CAPTURE(governed_run, immediate_file_blobs, durability::immediate, false)->Threads(1)->Threads(16)->UseRealTime();
BENCHMARK_CAPTURE(governed_run, immediate_sqlite_blobs, durability::immediate, true)->Threads(1)->Threads(16)->UseRealTime();
BENCHMARK_CAPTURE(governed_run, deferred_file_blobs, durability::deferred, false)->Threads(1)->Threads(16)->UseRealTime();
BENCHMARK_CAPTURE(governed_run, deferred_sqlite_blobs, durability::deferred, true)->Threads(1)->Threads(16)->UseRealTime();
BENCHMARK_CAPTURE(governed_run, write_behind_sqlite_blobs, durability::deferred, true, true)->Threads(1)->Threads(16)->UseRealTime();
// The governed path alone: the vendor answers in memory, so the time is what a run adds to a call.
BENCHMARK_CAPTURE(governed_run, write_behind_in_memory_vendor, durability::deferred, true, true, true)->Threads(1)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
