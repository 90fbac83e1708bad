#ifndef INTEGRATION_TESTS_WEBHOOKS_DELIVERY_WORLD_HPP
#define INTEGRATION_TESTS_WEBHOOKS_DELIVERY_WORLD_HPP

// What the delivery worker runs against in tests: a SQLite store, blob store and local vault in a
// temporary directory, the curl transport, an egress policy that allows loopback (as an operator
// allow-list would) with names resolved by a resolver the test can change, and a manual clock.
// Subscriptions and deliveries are built with the domain and saved directly, so these tests need
// no other service.

#include <integration/backends/curl/curl_transport.hpp>
#include <integration/backends/local_vault/local_secret_store.hpp>
#include <integration/backends/sqlite/sqlite_blob_store.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>
#include <integration/core/id.hpp>
#include <integration/outbound/egress_policy.hpp>
#include <integration/outbound/redirects.hpp>
#include <integration/outbound/token_bucket.hpp>

#include "storage/fixtures.hpp"
#include "support/base64.hpp"

#include <ctime>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

namespace integration::testing {

/** A resolver whose answers the test changes between calls (DNS rebinding). */
class mutable_resolver final : public net::resolver {
public:
    void set(std::string const& host, std::string const& address) {
        std::lock_guard lock(mutex_);
        entries_[host] = {*net::ip_address::parse(address)};
    }
    result<std::vector<net::ip_address>> resolve(std::string const& host) override {
        std::lock_guard lock(mutex_);
        auto it = entries_.find(host);
        if (it == entries_.end()) return error{errc::unavailable, "no such host"};
        return it->second;
    }

private:
    std::mutex mutex_;
    std::map<std::string, std::vector<net::ip_address>> entries_;
};

/** An IMF-fixdate, as a receiver writes in Retry-After. */
inline std::string http_date(time_point t) {
    auto secs =
        std::chrono::system_clock::to_time_t(std::chrono::time_point_cast<std::chrono::system_clock::duration>(t));
    std::tm tm{};
    ::gmtime_r(&secs, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    return buf;
}

struct delivery_world {
    explicit delivery_world(temp_dir const& dir, std::string tenant = "tenant-a")
        : ctx(request_context::for_tenant(std::move(tenant))),
          store(must(storage::open_sqlite_store({.path = dir.file("i.db"), .clock = &clock}))),
          blobs(must(blobs::open_sqlite_blob_store({.path = dir.file("b.db"), .clock = &clock}))),
          vault(must(credentials::open_local_secret_store(
              {.path = dir.file("s.db"), .key_file = dir.file("master.key"), .key_env = "", .clock = &clock}))) {
        std::random_device rd;
        std::string key(32, '\0');
        for (auto& c : key) c = static_cast<char>(rd());
        secret = "whsec_" + base64(key);
    }

    http::hop_check hop_check() { return http::egress_hop_check(policy, dns); }

    /** `http://host:port/hook`, with `host` resolving to 127.0.0.1. */
    std::string url(std::uint16_t port, std::string const& host = "hooks.test") {
        dns.set(host, "127.0.0.1");
        return "http://" + host + ":" + std::to_string(port) + "/hook";
    }

    webhooks::webhook_subscription subscribe(std::string const& endpoint,
                                             std::function<void(webhooks::subscription_spec&)> const& adjust = {}) {
        auto ref = must(vault->put(ctx.tenant_id, "whsec-" + std::to_string(++n), secret_bytes(secret)));
        webhooks::subscription_spec spec{
            .project_id = "proj-1", .event_type = "order.*", .endpoint_url = endpoint, .signing_secret_ref = ref.uri()};
        if (adjust) adjust(spec);
        auto s = must(webhooks::webhook_subscription::create(ctx, clock.now(), spec));
        must(store->transact(ctx, [&](storage::unit_of_work& uow) { return uow.subscriptions().save(s); }));
        return s;
    }

    /** `count` Pending deliveries to `sub`, due now, saved in one transaction; their ids. */
    std::vector<std::string> deliver_many(webhooks::webhook_subscription const& sub, std::size_t count,
                                          std::string const& payload = R"({"orderId":"o-1"})") {
        std::vector<std::string> ids;
        auto event = new_id("evt", clock.now()) + "-" + std::to_string(++n);
        auto ref = must(blobs->put(ctx.tenant_id, "webhooks/events/" + event, payload));
        must(store->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            for (std::size_t i = 0; i < count; ++i) {
                auto d = must(webhooks::webhook_delivery::outbound(ctx, clock.now(), sub, "order.paid",
                                                                   event + "-" + std::to_string(i), ref));
                must(uow.deliveries().save(d));
                ids.push_back(d.id());
            }
            return {};
        }));
        return ids;
    }
    std::string deliver(webhooks::webhook_subscription const& sub,
                        std::string const& payload = R"({"orderId":"o-1"})") {
        return deliver_many(sub, 1, payload).at(0);
    }

    /** Rotates `subscription_id` to sign with `ref`; the replaced secret signs for `overlap` more. */
    void rotate(std::string const& subscription_id, std::string const& ref, std::chrono::milliseconds overlap) {
        must(store->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            auto s = must(uow.subscriptions().find(subscription_id));
            must(s.rotate_signing_secret(ref, clock.now(), overlap));
            return uow.subscriptions().save(s);
        }));
    }
    webhooks::webhook_delivery delivery(std::string const& id) {
        return must(
            storage::read_for(*store, ctx, [&](storage::unit_of_work& uow) { return uow.deliveries().find(id); }));
    }
    webhooks::webhook_subscription subscription(std::string const& id) {
        return must(
            storage::read_for(*store, ctx, [&](storage::unit_of_work& uow) { return uow.subscriptions().find(id); }));
    }
    std::vector<failures::integration_failure> failures_of(std::string const& delivery_id) {
        return must(storage::read_for(*store, ctx,
                                      [&](storage::unit_of_work& uow) {
                                          return uow.failures().list({.delivery_id = delivery_id}, {});
                                      }))
            .items;
    }
    /** Replays `id` with `extra` more attempts (the publisher gives the subscription's
     *  `maxAttempts`). */
    void replay(std::string const& id, std::int64_t extra = 1) {
        must(store->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            auto d = must(uow.deliveries().find(id));
            must(d.replay(extra, clock.now()));
            return uow.deliveries().save(d);
        }));
    }

    manual_clock clock;
    request_context ctx;
    std::unique_ptr<storage::store> store;
    std::unique_ptr<blobs::blob_store> blobs;
    std::unique_ptr<credentials::local_secret_store> vault;
    std::unique_ptr<http::transport> transport = http::make_curl_transport();
    mutable_resolver dns;
    net::egress_policy policy{.allow = {net::cidr::parse("127.0.0.0/8").value()}};
    resilience::rate_limiter limits{clock};
    std::string secret;
    int n = 0;
};

}  // namespace integration::testing

#endif
