// A delivery worker in its own process, for the process tests: sends what is due in the store until
// nothing is left, then exits 0 (2 when its time bound passes first).
// Usage: delivery_probe DIR [--kill-after-answer] [--clock-offset-ms N] [--max-in-flight N]
//   DIR holds i.db, b.db, s.db and master.key (tests/webhooks/delivery_world.hpp's layout).
//   --kill-after-answer: the process SIGKILLs itself once a receiver answered 2xx, before the
//   worker can record it (what a crash between the answer and the commit looks like).
//   --clock-offset-ms: runs the clock ahead, so leases of a killed worker have expired.

#include <integration/backends/curl/curl_transport.hpp>
#include <integration/backends/local_vault/local_secret_store.hpp>
#include <integration/backends/sqlite/sqlite_blob_store.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>
#include <integration/outbound/egress_policy.hpp>
#include <integration/outbound/token_bucket.hpp>
#include <integration/services/delivery_worker.hpp>

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

namespace {

using namespace integration;

class offset_clock final : public integration::clock {
public:
    explicit offset_clock(std::chrono::milliseconds offset) : offset_(offset) {}
    time_point now() const override { return std::chrono::system_clock::now() + offset_; }

private:
    std::chrono::milliseconds offset_;
};

class killing_transport final : public http::transport {
public:
    explicit killing_transport(http::transport& inner) : inner_(inner) {}
    result<http::response> send(http::request const& r) override { return inner_.send(r); }
    void start(http::request r, completion done) override {
        inner_.start(std::move(r), [done = std::move(done)](result<http::response> res) {
            if (res && res->status >= 200 && res->status < 300) ::raise(SIGKILL);
            done(std::move(res));
        });
    }

private:
    http::transport& inner_;
};

template <class T>
T must(result<T> r, char const* what) {
    if (!r) {
        std::fprintf(stderr, "%s: %s\n", what, r.error().message().c_str());
        std::exit(1);
    }
    return std::move(*r);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr,
                     "usage: delivery_probe DIR [--kill-after-answer] [--clock-offset-ms N] [--max-in-flight N]\n");
        return 2;
    }
    std::string dir = argv[1];
    bool kill_after_answer = false;
    std::chrono::milliseconds offset{0};
    std::size_t max_in_flight = 64;
    for (int i = 2; i < argc; ++i) {
        if (std::strcmp(argv[i], "--kill-after-answer") == 0)
            kill_after_answer = true;
        else if (std::strcmp(argv[i], "--clock-offset-ms") == 0 && i + 1 < argc)
            offset = std::chrono::milliseconds(std::stoll(argv[++i]));
        else if (std::strcmp(argv[i], "--max-in-flight") == 0 && i + 1 < argc)
            max_in_flight = std::stoul(argv[++i]);
    }
    offset_clock clock(offset);
    auto store = must(storage::open_sqlite_store({.path = dir + "/i.db", .clock = &clock}), "store");
    auto blobs = must(blobs::open_sqlite_blob_store({.path = dir + "/b.db", .clock = &clock}), "blobs");
    auto vault = must(credentials::open_local_secret_store(
                          {.path = dir + "/s.db", .key_file = dir + "/master.key", .key_env = "", .clock = &clock}),
                      "vault");
    auto curl = http::make_curl_transport();
    killing_transport killing(*curl);
    http::transport& transport = kill_after_answer ? static_cast<http::transport&>(killing) : *curl;
    net::system_resolver dns;
    net::egress_policy policy{.allow = {net::cidr::parse("127.0.0.0/8").value()}};
    resilience::rate_limiter limits(clock);
    webhooks::delivery_worker worker(*store, *vault, *blobs, transport, http::egress_hop_check(policy, dns), limits,
                                     clock, {.max_in_flight = max_in_flight, .max_in_flight_per_tenant = max_in_flight, .batch = max_in_flight});
    auto bound = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (std::chrono::steady_clock::now() < bound) {
        auto started = must(worker.sweep(), "sweep");
        if (started > 0 || worker.stats().in_flight.load() > 0) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
            continue;
        }
        must(worker.drain(), "drain");
        auto due = must(store->oldest_due_delivery(), "oldest due");
        if (!due || *due > clock.now()) return 0;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return 2;
}
