#ifndef INTEGRATION_TESTS_DOMAIN_FIXTURES_HPP
#define INTEGRATION_TESTS_DOMAIN_FIXTURES_HPP

// Builders shared by the aggregate tests: a tenant context, a manual clock, and aggregates in each
// of the states the transition tests start from. Everything here goes through the public API.

#include <integration/domain/connection.hpp>
#include <integration/core/aggregate.hpp>
#include <integration/ports/clock.hpp>
#include <integration/core/context.hpp>
#include <integration/core/id.hpp>
#include <integration/domain/api_client.hpp>
#include <integration/domain/provider.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>

#include "support/expect_errc.hpp"

#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace fixtures {

using namespace std::chrono_literals;

inline integration::request_context tenant_ctx(std::string tenant = "t1") {
    return integration::request_context::for_tenant(std::move(tenant), "alice");
}

inline integration::request_context admin_ctx(std::string tenant = "t1") {
    auto c = tenant_ctx(std::move(tenant));
    c.admin = true;
    return c;
}

/** A well-formed SecretFingerprint made of one repeated hex digit. */
inline std::string fingerprint(char digit = 'a') { return "hmac-sha256:" + std::string(64, digit); }

inline integration::providers::provider_spec sms_provider_spec(std::string key = "acme-sms") {
    return {.key = std::move(key),
            .display_name = "Acme SMS",
            .category = integration::providers::provider_category::communication,
            .auth_model = integration::auth_mode::api_key,
            .base_url = "https://api.acme.example",
            .capabilities = {"sms.send", "sms.status"}};
}

inline integration::providers::integration_provider registered_provider(integration::time_point now,
                                                                       std::string key = "acme-sms") {
    return integration::providers::integration_provider::register_new(tenant_ctx(), now, sms_provider_spec(key))
        .value();
}

inline integration::providers::integration_provider active_provider(integration::time_point now) {
    auto p = registered_provider(now);
    p.activate(1).value();
    return p;
}

inline integration::providers::api_client_spec sms_client_spec(std::string version = "1.0.0") {
    return {.assembly_name = "Acme.Sms.ApiClient",
            .version = std::move(version),
            .capabilities = {"sms.send"},
            .operations = {{.operation = "sms.send", .method = "POST", .path = "/v1/messages"}}};
}

inline integration::connections::connection_spec connection_spec(integration::time_point now) {
    return {.project_id = "proj-1",
            .display_name = "Acme SMS for proj-1",
            .credential_id = integration::new_id(integration::id_prefix::credential, now)};
}

inline integration::connections::integration_connection pending_connection(integration::time_point now) {
    return integration::connections::integration_connection::create(tenant_ctx(), now, active_provider(now),
                                                                    connection_spec(now))
        .value();
}

inline integration::connections::integration_connection active_connection(integration::time_point now) {
    auto c = pending_connection(now);
    c.record_health({integration::health_status::healthy, "200 OK"}, now).value();
    c.activate(true, now).value();
    return c;
}

inline integration::connections::integration_connection degraded_connection(integration::time_point now) {
    auto c = active_connection(now);
    c.record_health({integration::health_status::unhealthy, "503 Service Unavailable"}, now).value();
    return c;
}

inline integration::connections::integration_connection retired_connection(integration::time_point now) {
    auto c = active_connection(now);
    c.retire("customer left").value();
    return c;
}

/** The aggregate as JSON plus its event count: equal snapshots mean an operation changed nothing. */
struct snapshot {
    std::string json;
    std::size_t events = 0;
};

template <class A>
snapshot snap(A const& a) {
    return {boost::json::serialize(integration::aggregate_to_json(a)), a.pending_events().size()};
}

template <class A>
std::vector<std::string> event_types(A const& a) {
    std::vector<std::string> out;
    for (auto const& e : a.pending_events()) out.push_back(e.event_type);
    return out;
}

/** A SQLite store in a fresh file under the test temp directory, removed afterwards. */
class temp_store {
public:
    explicit temp_store(integration::clock const& clock) {
        path_ = std::filesystem::path(testing::TempDir()) /
                ("domain-" + integration::new_id("db", std::chrono::system_clock::now()) + ".db");
        store_ = integration::storage::open_sqlite_store({.path = path_.string(), .synchronous_full = false,
                                                          .clock = &clock})
                     .value();
    }
    temp_store(temp_store const&) = delete;
    temp_store& operator=(temp_store const&) = delete;
    ~temp_store() {
        store_.reset();
        std::error_code ec;
        for (auto const* suffix : {"", "-wal", "-shm"})
            std::filesystem::remove(path_.string() + suffix, ec);
    }

    integration::storage::store& operator*() const { return *store_; }
    integration::storage::store* operator->() const { return store_.get(); }

private:
    std::filesystem::path path_;
    std::unique_ptr<integration::storage::store> store_;
};

}  // namespace fixtures

/** Asserts that `agg` still matches the snapshot `before`: same fields, no new event. */
#define EXPECT_UNCHANGED(agg, before)                                                           \
    do {                                                                                        \
        auto const after_ = ::fixtures::snap(agg);                                              \
        EXPECT_EQ(after_.json, (before).json);                                                  \
        EXPECT_EQ(after_.events, (before).events);                                              \
    } while (0)

#endif
