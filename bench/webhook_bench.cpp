// Outbound webhooks: signed deliveries per second through the delivery worker (lease in SQLite,
// payload from the blob store, Standard Webhooks signature, egress check with a pinned address,
// libcurl multi send, outcomes recorded in batches) to a local keep-alive receiver, vs a raw
// libcurl loop posting the same bodies to the same receiver in the same run; and one event fanned
// out to 1,000 subscriptions.

#include <integration/backends/curl/curl_transport.hpp>
#include <integration/backends/local_vault/local_secret_store.hpp>
#include <integration/backends/sqlite/sqlite_blob_store.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>
#include <integration/core/id.hpp>
#include <integration/outbound/egress_policy.hpp>
#include <integration/outbound/token_bucket.hpp>
#include <integration/services/delivery_worker.hpp>
#include <integration/services/publisher.hpp>

#include "keep_alive_receiver.hpp"
#include "store_mmap.hpp"

#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

using namespace integration;

namespace {

bench::keep_alive_receiver& server() {
    static bench::keep_alive_receiver r("HTTP/1.1 204 No Content\r\n\r\n");
    return r;
}

std::string const payload =
    R"({"type":"order.paid","data":{"orderId":"o-123456","amount":4200,"currency":"EUR","customer":"c-42"}})";

struct world {
    std::filesystem::path dir = std::filesystem::temp_directory_path() / "integration-webhook-bench";
    std::unique_ptr<storage::store> store;
    std::unique_ptr<blobs::blob_store> blobs;
    std::unique_ptr<credentials::local_secret_store> vault;
    std::unique_ptr<http::transport> transport = http::make_curl_transport();
    net::static_resolver dns;
    net::egress_policy policy{.allow = {net::cidr::parse("127.0.0.0/8").value()}};
    resilience::rate_limiter limits{system_clock::instance()};
    request_context ctx = request_context::for_tenant("bench");
    std::vector<webhooks::webhook_subscription> subs;
    std::unique_ptr<webhooks::delivery_worker> worker;
    std::unique_ptr<webhooks::publisher> publisher;
    std::uint64_t asked = 0;  // deliveries `deliver` waited for so far

    explicit world(std::size_t subscriptions, durability recording = durability::deferred) {
        std::filesystem::remove_all(dir);
        std::filesystem::create_directories(dir);
        store = storage::open_sqlite_store({.path = (dir / "i.db").string(), .mmap_bytes = bench::store_mmap_bytes()}).value();
        blobs = blobs::open_sqlite_blob_store({.path = (dir / "b.db").string()}).value();
        vault = credentials::open_local_secret_store(
                    {.path = (dir / "s.db").string(), .key_file = (dir / "k").string(), .key_env = ""})
                    .value();
        dns.add("hooks.bench.test", {*net::ip_address::parse("127.0.0.1")});
        auto ref = vault->put(ctx.tenant_id, "whsec", secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).value();
        auto now = system_clock::instance().now();
        store
            ->transact(ctx,
                       [&](storage::unit_of_work& uow) -> result<void> {
                           for (std::size_t i = 0; i < subscriptions; ++i) {
                               auto s = webhooks::webhook_subscription::create(
                                            ctx, now,
                                            {.project_id = "p",
                                             .event_type = "order.*",
                                             .endpoint_url =
                                                 "http://hooks.bench.test:" + std::to_string(server().port()) + "/hook",
                                             .signing_secret_ref = ref.uri()})
                                            .value();
                               if (auto r = uow.subscriptions().save(s); !r) return r;
                               subs.push_back(std::move(s));
                           }
                           return {};
                       })
            .value();
        worker = std::make_unique<webhooks::delivery_worker>(
            *store, *vault, *blobs, *transport, http::egress_hop_check(policy, dns), limits, system_clock::instance(),
            webhooks::delivery_worker_options{.recording = recording});
        publisher = std::make_unique<webhooks::publisher>(*store, *blobs, system_clock::instance());
    }

    /** `n` Pending deliveries of one payload to the first subscription, due now. */
    void enqueue(std::size_t n) {
        auto now = system_clock::instance().now();
        auto event = new_id("evt", now);
        auto ref = blobs->put(ctx.tenant_id, "webhooks/events/" + event, payload).value();
        store
            ->transact(ctx,
                       [&](storage::unit_of_work& uow) -> result<void> {
                           for (std::size_t i = 0; i < n; ++i) {
                               auto d = webhooks::webhook_delivery::outbound(ctx, now, subs.front(), "order.paid",
                                                                             event + "-" + std::to_string(i), ref)
                                            .value();
                               if (auto r = uow.deliveries().save(d); !r) return r;
                           }
                           return {};
                       })
            .value();
    }

    /** Runs the worker until `n` more of the enqueued deliveries were recorded as Delivered
     *  (counted from what was asked before: a call may record a few more than its `n`). */
    bool deliver(std::uint64_t n) {
        auto target = (asked += n);
        for (int i = 0; i < 1'000'000 && worker->stats().delivered_total.load() < target; ++i) {
            auto started = worker->sweep();
            if (!started) return false;
            if (*started == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        return worker->drain() && worker->stats().delivered_total.load() >= target;
    }
};

constexpr std::size_t batch = 2'000;

void worker_deliveries(benchmark::State& state, durability recording) {
    world w(1, recording);
    double commits = 0;
    for (auto _ : state) {
        state.PauseTiming();
        w.enqueue(batch);
        auto c0 = storage::sqlite_store_stats(*w.store).value().commits;
        state.ResumeTiming();
        if (!w.deliver(batch)) state.SkipWithError("deliveries failed");
        commits += static_cast<double>(storage::sqlite_store_stats(*w.store).value().commits - c0);
    }
    state.counters["commits"] = benchmark::Counter(commits, benchmark::Counter::kAvgIterations);
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
}
BENCHMARK_CAPTURE(worker_deliveries, deferred, durability::deferred)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(worker_deliveries, immediate, durability::immediate)->Unit(benchmark::kMillisecond)->UseRealTime();

std::size_t discard(char*, std::size_t size, std::size_t n, void*) {
    return size * n;
}

// The raw baselines' request: the receiver's URL, the worker's headers with a precomputed
// signature, and the payload, set on `h` (`headers` must outlive it).
void set_raw_request(CURL* h, std::string const& url, curl_slist* headers) {
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
}

curl_slist* raw_headers() {
    curl_slist* headers = nullptr;
    for (auto const* line : {"Content-Type: application/json", "User-Agent: integration-webhooks/1",
                             "webhook-id: dlv-01JDX0000000000000000000", "webhook-timestamp: 1767225600",
                             "webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="})
        headers = curl_slist_append(headers, line);
    return headers;
}

// The same bodies and headers (a precomputed signature) posted one after another on one
// keep-alive connection: libcurl at its simplest, with nothing leased, signed or recorded.
void raw_curl(benchmark::State& state) {
    CURL* h = curl_easy_init();
    auto url = "http://127.0.0.1:" + std::to_string(server().port()) + "/hook";
    curl_slist* headers = raw_headers();
    set_raw_request(h, url, headers);
    for (auto _ : state)
        for (std::size_t i = 0; i < batch; ++i)
            if (curl_easy_perform(h) != CURLE_OK) state.SkipWithError("curl failed");
    curl_slist_free_all(headers);
    curl_easy_cleanup(h);
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
}
BENCHMARK(raw_curl)->Unit(benchmark::kMillisecond)->UseRealTime();

// The same requests with the worker's concurrency: `range(0)` easy handles (the worker keeps 256
// in flight) on one libcurl multi handle driven by one thread, each re-added as soon as its answer
// is in, so `range(0)` keep-alive connections to the same receiver. Not the baseline (`raw_curl`
// is): it shows what libcurl and the receiver cost at that concurrency, without the worker.
void raw_curl_multi(benchmark::State& state) {
    auto const flights = static_cast<std::size_t>(state.range(0));
    auto url = "http://127.0.0.1:" + std::to_string(server().port()) + "/hook";
    curl_slist* headers = raw_headers();
    CURLM* multi = curl_multi_init();
    std::vector<CURL*> handles;
    for (std::size_t i = 0; i < flights; ++i) {
        CURL* h = curl_easy_init();
        set_raw_request(h, url, headers);
        handles.push_back(h);
    }
    for (auto _ : state) {
        std::size_t to_start = batch, done = 0;
        for (std::size_t i = 0; i < flights && to_start > 0; ++i, --to_start) curl_multi_add_handle(multi, handles[i]);
        while (done < batch) {
            int running = 0, left = 0;
            curl_multi_perform(multi, &running);
            while (CURLMsg* m = curl_multi_info_read(multi, &left)) {
                if (m->msg != CURLMSG_DONE) continue;
                if (m->data.result != CURLE_OK) state.SkipWithError("curl failed");
                CURL* h = m->easy_handle;
                curl_multi_remove_handle(multi, h);
                ++done;
                if (to_start > 0) {
                    --to_start;
                    curl_multi_add_handle(multi, h);
                }
            }
            if (done < batch) curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
        }
    }
    for (auto* h : handles) curl_easy_cleanup(h);
    curl_multi_cleanup(multi);
    curl_slist_free_all(headers);
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
}
BENCHMARK(raw_curl_multi)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();

// One event published to 1,000 matching subscriptions (the payload blob, then one transaction
// with the event and its 1,000 deliveries), then sent and recorded by the worker. The counters split the
// time and the SQLite commits between the publish and the deliveries.
void fan_out(benchmark::State& state) {
    world w(1'000);
    std::int64_t n = 0;
    double publish_s = 0, deliver_s = 0, publish_commits = 0, deliver_commits = 0;
    auto commits = [&] { return static_cast<double>(storage::sqlite_store_stats(*w.store).value().commits); };
    for (auto _ : state) {
        auto c0 = commits();
        auto t0 = std::chrono::steady_clock::now();
        auto pub =
            w.publisher->publish(w.ctx, "order.paid", boost::json::parse(payload), "bench-" + std::to_string(++n));
        if (!pub || pub->delivery_ids.size() != 1'000) state.SkipWithError("publish failed");
        auto c1 = commits();
        auto t1 = std::chrono::steady_clock::now();
        if (!w.deliver(1'000)) state.SkipWithError("deliveries failed");
        publish_s += std::chrono::duration<double>(t1 - t0).count();
        deliver_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
        publish_commits += c1 - c0;
        deliver_commits += commits() - c1;
    }
    auto per = [&](double v) { return benchmark::Counter(v, benchmark::Counter::kAvgIterations); };
    state.counters["publish_ms"] = per(publish_s * 1000);
    state.counters["deliver_ms"] = per(deliver_s * 1000);
    state.counters["publish_commits"] = per(publish_commits);
    state.counters["deliver_commits"] = per(deliver_commits);
    state.SetItemsProcessed(state.iterations() * 1'000);
}
BENCHMARK(fan_out)->Unit(benchmark::kMillisecond)->UseRealTime();

/** The process's resident set in KiB (VmRSS), and its anonymous part (RssAnon). */
std::pair<double, double> rss_kib() {
    std::ifstream in("/proc/self/status");
    double rss = 0, anon = 0;
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("VmRSS:", 0) == 0) rss = std::stod(line.substr(6));
        if (line.rfind("RssAnon:", 0) == 0) anon = std::stod(line.substr(8));
    }
    return {rss, anon};
}

// A backlog of 100,000 Pending deliveries (written untimed, 10,000 per transaction), drained by
// the worker while the process's RSS is sampled every 5,000 recorded deliveries. The counters
// give the first sample (taken once the worker has sent its first 5,000, so that its pools,
// connections and caches exist) and the largest, and the growth between them; every sample
// goes to stderr.
void backlog_rss(benchmark::State& state) {
    constexpr std::uint64_t backlog = 100'000, every = 5'000;
    world w(1);
    for (std::uint64_t i = 0; i < backlog / 10'000; ++i) w.enqueue(10'000);
    std::vector<std::pair<double, double>> samples;
    auto started = std::chrono::steady_clock::now();
    for (auto _ : state) {
        for (std::uint64_t done = 0; done < backlog; done += every) {
            if (!w.deliver(every)) state.SkipWithError("deliveries failed");
            samples.push_back(rss_kib());
        }
    }
    auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (samples.empty()) return;
    auto first = samples.front();
    auto max_rss = std::max_element(samples.begin(), samples.end())->first;
    auto max_anon = std::max_element(samples.begin(), samples.end(),
                                     [](auto const& a, auto const& b) { return a.second < b.second; })
                        ->second;
    for (std::size_t i = 0; i < samples.size(); ++i)
        std::fprintf(stderr, "backlog_rss: %6zu delivered  rss %8.1f MiB  anon %8.1f MiB\n", (i + 1) * every,
                     samples[i].first / 1024, samples[i].second / 1024);
    state.counters["rss_first_mib"] = first.first / 1024;
    state.counters["rss_max_mib"] = max_rss / 1024;
    state.counters["rss_growth_pct"] = 100 * (max_rss - first.first) / first.first;
    state.counters["anon_first_mib"] = first.second / 1024;
    state.counters["anon_growth_pct"] = 100 * (max_anon - first.second) / first.second;
    state.counters["deliveries_per_s"] = static_cast<double>(backlog) / seconds;
}
BENCHMARK(backlog_rss)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
