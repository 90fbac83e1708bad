#ifndef INTEGRATION_TESTS_STORAGE_FIXTURES_HPP
#define INTEGRATION_TESTS_STORAGE_FIXTURES_HPP

// Builders of valid aggregates and a temporary directory, shared by the storage tests.

#include <integration/core/id.hpp>
#include <integration/ports/store.hpp>
#include <integration/ports/clock.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <string>

namespace integration::testing {

/** A fresh directory under the system temp dir, removed at scope exit. */
class temp_dir {
public:
    temp_dir() {
        std::random_device rd;
        path_ = std::filesystem::temp_directory_path() / ("integration-test-" + std::to_string(rd()) + std::to_string(rd()));
        std::filesystem::create_directories(path_);
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    std::filesystem::path const& path() const { return path_; }
    std::string file(std::string const& name) const { return (path_ / name).string(); }

private:
    std::filesystem::path path_;
};

/** Unwraps a result or fails the test with the error's message. */
template <class T>
T must(result<T> r) {
    if (!r) throw std::runtime_error("unexpected error: " + r.error().message());
    return std::move(*r);
}
inline void must(result<void> r) {
    if (!r) throw std::runtime_error("unexpected error: " + r.error().message());
}

inline std::string fingerprint(char c = 'a') { return "hmac-sha256:" + std::string(64, c); }

inline providers::provider_spec provider_spec(std::string key = "acme") {
    providers::provider_spec s;
    s.key = std::move(key);
    s.display_name = "Acme SMS";
    s.category = providers::provider_category::communication;
    s.auth_model = auth_mode::api_key;
    s.base_url = "https://api.acme.example";
    s.capabilities = {"sms.send", "sms.status"};
    s.environments = {{"sandbox", "https://sandbox.acme.example"}};
    s.rate_limit_profile = rate_limit_profile{.requests_per_second = 5, .burst = 10};
    s.health_check = providers::health_check{.method = "GET", .path = "/health", .expect_status = 200};
    return s;
}

inline providers::api_client_spec client_spec(std::string assembly = "Acme.Sms.ApiClient", std::string version = "1.0.0") {
    providers::api_client_spec s;
    s.assembly_name = std::move(assembly);
    s.version = std::move(version);
    s.capabilities = {"sms.send"};
    s.auth_mode = auth_mode::api_key;
    s.operations = {{"sms.send", "POST", "/v1/accounts/{account}/messages"}};
    return s;
}

/** An Active provider (with an Active client) as the domain would build it, not yet saved. */
inline providers::integration_provider active_provider(request_context const& ctx, time_point now, std::string key = "acme") {
    auto p = must(providers::integration_provider::register_new(ctx, now, provider_spec(std::move(key))));
    must(p.activate(1));
    return p;
}

/** Saves an Active provider in `ctx`'s tenant and returns its id. */
inline std::string save_active_provider(storage::store& store, request_context const& ctx, time_point now) {
    auto p = active_provider(ctx, now);
    must(store.transact(ctx, [&](storage::unit_of_work& uow) -> result<void> { return uow.providers().save(p); }));
    return p.id();
}

inline connections::connection_spec connection_spec(std::string project = "proj-1") {
    connections::connection_spec s;
    s.project_id = std::move(project);
    s.display_name = "Acme for project";
    s.credential_id = "cred-01JD3Q8V6X4T2M9R5B7N1K0FZC";  // a connection needs one; tests that resolve it set their own
    s.configuration = {{"account", "AC123"}, {"region", "eu"}};
    s.endpoints = {{"default", "https://eu.api.acme.example", std::string("eu-west")}};
    s.scopes = {"sms.send"};
    s.rate_limit_budget = rate_limit_budget{.requests_per_second = 2, .burst = 4};
    s.retry_policy = retry_policy{.max_attempts = 4, .initial_delay_ms = 100, .max_delay_ms = 1000};
    return s;
}

/** An Active, Healthy connection of `p` naming a credential id that is not saved; not yet saved. */
inline connections::integration_connection active_connection(request_context const& ctx, time_point now,
                                                             providers::integration_provider const& p) {
    auto spec = connection_spec();
    spec.credential_id = new_id(id_prefix::credential, now);
    auto conn = must(connections::integration_connection::create(ctx, now, p, spec));
    must(conn.record_health({health_status::healthy, "ok"}, now));
    must(conn.activate(true, now));
    return conn;
}

inline credentials::credential_spec credential_spec(std::string provider_id) {
    credentials::credential_spec s;
    s.provider_id = std::move(provider_id);
    s.auth_mode = auth_mode::api_key;
    s.key_vault_ref = "vault://local/t1/cred-key?version=1";
    s.fingerprint = fingerprint();
    s.auth_parameters = {{"placement", {{"in", "header"}, {"name", "Authorization"}, {"prefix", "Bearer "}}}};
    s.rotation_policy = credentials::rotation_policy{.rotate_every_days = 30, .notify_before_days = 5};
    return s;
}

/** A backend under test: makes a fresh store in `dir` using `clk`. */
struct store_backend {
    std::string name;
    std::function<std::unique_ptr<storage::store>(temp_dir const& dir, clock const* clk)> open;
};

}  // namespace integration::testing

#endif
