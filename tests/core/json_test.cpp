#include <integration/core/json.hpp>

#include <integration/domain/connection.hpp>
#include <integration/core/aggregate.hpp>
#include <integration/core/id.hpp>
#include <integration/domain/policies.hpp>
#include <integration/domain/credential.hpp>
#include <integration/services/credential_service.hpp>
#include <integration/domain/failure.hpp>
#include <integration/domain/api_client.hpp>
#include <integration/domain/provider.hpp>
#include <integration/domain/run.hpp>
#include <integration/domain/delivery.hpp>
#include <integration/domain/subscription.hpp>

#include "support/expect_errc.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace {

using namespace integration;
using namespace std::chrono_literals;
namespace json = boost::json;

request_context ctx() { return request_context::for_tenant("t1", "alice"); }
std::string fingerprint(char c) { return "hmac-sha256:" + std::string(64, c); }

/** Serialises to text and back, as a store or an HTTP client would. */
template <class A>
A round_trip(A const& a) {
    auto text = json::serialize(aggregate_to_json(a));
    auto back = aggregate_from_json<A>(json::parse(text));
    if (!back) ADD_FAILURE() << back.error().message() << "\n" << text;
    return back.value();
}

/** The JSON of `a` with `edit` applied, read back. */
template <class A, class F>
result<A> read_edited(A const& a, F edit) {
    json::value j = aggregate_to_json(a);
    edit(j.as_object());
    return aggregate_from_json<A>(j);
}

class json_test : public testing::Test {
protected:
    manual_clock clock;

    json_test() { clock.advance(1234ms); }  // timestamps with a millisecond part

    providers::integration_provider provider(providers::provider_scope scope = providers::provider_scope::tenant) {
        providers::provider_spec s{.key = "acme-sms",
                                   .display_name = "Acme SMS",
                                   .category = providers::provider_category::communication,
                                   .auth_model = auth_mode::oauth2_client_credentials,
                                   .base_url = "https://api.acme.example",
                                   .capabilities = {"sms.send", "sms.status"},
                                   .environments = {{"sandbox", "https://sandbox.acme.example"},
                                                    {"production", "https://api.acme.example"}},
                                   .rate_limit_profile = rate_limit_profile{.requests_per_second = 2.5, .burst = 7},
                                   .health_check = providers::health_check{.method = "HEAD", .path = "/ping",
                                                                           .expect_status = 204},
                                   .scope = scope};
        auto c = ctx();
        c.admin = true;
        auto p = providers::integration_provider::register_new(c, clock.now(), s).value();
        p.activate(1).value();
        return p;
    }
    connections::integration_connection connection() {
        connections::connection_spec s{
            .project_id = "proj-1",
            .display_name = "Acme for proj-1",
            .credential_id = new_id(id_prefix::credential, clock.now()),
            .configuration = {{"accountSid", "AC1"}, {"regions", json::array{"eu", "us"}}, {"sandbox", false}},
            .endpoints = {{"default", "https://eu.api.acme.example", "eu"}, {"upload", "https://up.acme.example", {}}},
            .scopes = {"sms.send"},
            .rate_limit_budget = rate_limit_budget{.requests_per_second = 1, .burst = 2},
            .retry_policy = retry_policy{.max_attempts = 5, .initial_delay_ms = 100, .max_delay_ms = 1000}};
        auto c = connections::integration_connection::create(ctx(), clock.now(), provider(), s).value();
        c.record_health({health_status::healthy, "ok"}, clock.now()).value();
        c.activate(true, clock.now()).value();
        clock.advance(7ms);
        c.record_health({health_status::degraded, "slow"}, clock.now()).value();
        return c;
    }
};

// ---- round trips ----------------------------------------------------------------------------

TEST_F(json_test, provider_round_trips_with_environments_limits_and_health_check) {
    auto p = provider();
    p.mark_saved("bob", clock.now() + 5ms, 3);
    auto back = round_trip(p);
    EXPECT_EQ(aggregate_to_json(back), aggregate_to_json(p));
    EXPECT_EQ(back.id(), p.id());
    EXPECT_EQ(back.status(), providers::provider_status::active);
    EXPECT_EQ(back.data().environments.at(1).name, "production");
    EXPECT_EQ(back.data().rate_limit_profile->requests_per_second, 2.5);
    EXPECT_EQ(back.data().health_check->expect_status, 204);
    EXPECT_EQ(back.meta().version, 3);
    EXPECT_EQ(back.meta().updated_by, "bob");
    EXPECT_EQ(back.meta().updated_at, clock.now() + 5ms);
    EXPECT_TRUE(back.pending_events().empty()) << "events are not part of the stored state";
}

// Stored data written by a later version still reads (members ignored); a caller's request is read
// with `refuse`, which names the first member no field takes, at any depth.
TEST_F(json_test, unknown_members_are_ignored_or_refused_by_path) {
    auto j = boost::json::parse(R"({"key":"k","displayName":"d","category":"Model","authModel":"ApiKey",
        "baseUrl":"https://a.example","environments":[{"name":"sandbox","baseUrl":"https://s.example"},
        {"name":"production","baseUrl":"https://p.example","region":"eu"}]})");
    auto lenient = value_from_json<providers::provider_spec>(j);
    ASSERT_TRUE(lenient) << lenient.error().detail();
    EXPECT_EQ(lenient->environments.at(1).name, "production");
    auto strict = value_from_json<providers::provider_spec>(j, unknown_members::refuse);
    ASSERT_FALSE(strict);
    EXPECT_EQ(strict.error(), errc::invalid_argument);
    EXPECT_EQ(strict.error().detail().rfind("environments[1].region is not a field here", 0), 0u) << strict.error().detail();
    j.as_object()["environments"].as_array().pop_back();
    EXPECT_TRUE(value_from_json<providers::provider_spec>(j, unknown_members::refuse));
    j.as_object()["capability"] = boost::json::array{"x"};
    auto top = value_from_json<providers::provider_spec>(j, unknown_members::refuse);
    ASSERT_FALSE(top);
    EXPECT_EQ(top.error().detail().rfind("capability is not a field here", 0), 0u) << top.error().detail();
}

TEST_F(json_test, provider_json_uses_the_seed_names) {
    auto j = aggregate_to_json(provider(providers::provider_scope::global));
    EXPECT_TRUE(j.contains("providerId"));
    EXPECT_EQ(j.at("category").as_string(), "Communication");
    EXPECT_EQ(j.at("authModel").as_string(), "OAuth2ClientCredentials");
    EXPECT_EQ(j.at("status").as_string(), "Active");
    EXPECT_EQ(j.at("scope").as_string(), "global");
    EXPECT_EQ(j.at("metadata").at("tenantId").as_string(), "");
    EXPECT_EQ(j.at("metadata").at("createdAt").as_string(), "2026-01-01T00:00:01.234Z");
}

TEST_F(json_test, provider_without_optional_members_omits_them_and_reads_back) {
    auto p = providers::integration_provider::register_new(
                 ctx(), clock.now(),
                 {.key = "bare", .display_name = "Bare", .base_url = "https://bare.example"})
                 .value();
    auto j = aggregate_to_json(p);
    EXPECT_FALSE(j.contains("rateLimitProfile"));
    EXPECT_FALSE(j.contains("healthCheck"));
    auto back = round_trip(p);
    EXPECT_FALSE(back.data().rate_limit_profile);
    EXPECT_FALSE(back.data().health_check);
    EXPECT_TRUE(back.data().environments.empty());
}

TEST_F(json_test, api_client_round_trips_with_operations_and_version_history) {
    auto p = provider();
    auto c = providers::external_api_client::register_new(
                 ctx(), clock.now(), p,
                 {.assembly_name = "Acme.Sms.ApiClient",
                  .version = "1.0.0",
                  .capabilities = {"sms.send", "sms.status"},
                  .auth_mode = auth_mode::oauth2_client_credentials,
                  .rate_limit_profile = rate_limit_profile{.requests_per_second = 1, .burst = 1},
                  .operations = {{"sms.send", "POST", "/v1/messages"}, {"sms.status", "GET", "/v1/messages/{id}"}}})
                 .value();
    c.activate().value();
    clock.advance(24h);
    c.publish_version("1.1.0", clock.now()).value();
    auto back = round_trip(c);
    EXPECT_EQ(aggregate_to_json(back), aggregate_to_json(c));
    EXPECT_EQ(aggregate_to_json(back).at("version").as_string(), "1.1.0")
        << "the client's own version is its semver; the row version lives under metadata";
    EXPECT_EQ(back.status(), providers::client_status::active);
    ASSERT_EQ(back.data().versions.size(), 2u);
    EXPECT_EQ(back.data().versions[1].registered_at, clock.now());
    ASSERT_NE(back.find_operation("sms.status"), nullptr);
    EXPECT_EQ(back.find_operation("sms.status")->path, "/v1/messages/{id}");
}

TEST_F(json_test, connection_round_trips_with_configuration_endpoints_and_policies) {
    auto c = connection();
    auto back = round_trip(c);
    EXPECT_EQ(aggregate_to_json(back), aggregate_to_json(c));
    EXPECT_EQ(back.status(), connections::connection_status::degraded);
    EXPECT_EQ(back.data().health, health_status::degraded);
    EXPECT_EQ(back.data().last_checked_at, clock.now());
    EXPECT_EQ(back.data().established_at, clock.now() - 7ms);
    EXPECT_EQ(back.data().configuration.at("regions").as_array().size(), 2u);
    EXPECT_EQ(back.data().endpoints[0].region, "eu");
    EXPECT_FALSE(back.data().endpoints[1].region);
    EXPECT_EQ(back.data().retry_policy->max_attempts, 5);
    EXPECT_EQ(back.data().rate_limit_budget->burst, 2);
}

// One stored before creation required a credential.
TEST_F(json_test, connection_without_credential_reads_back_without_one) {
    auto made = connections::integration_connection::create(
                    ctx(), clock.now(), provider(),
                    {.project_id = "proj-1", .display_name = "Acme", .credential_id = new_id(id_prefix::credential, clock.now())})
                    .value();
    auto data = made.data();
    data.credential_id.reset();
    auto c = connections::integration_connection::restore(made.meta(), data).value();
    auto j = aggregate_to_json(c);
    EXPECT_FALSE(j.contains("credentialId"));
    EXPECT_FALSE(j.contains("lastCheckedAt"));
    auto back = round_trip(c);
    EXPECT_FALSE(back.data().credential_id);
    EXPECT_FALSE(back.data().established_at);

    // An explicit null reads as absent.
    auto with_null = read_edited(c, [](json::object& o) { o["credentialId"] = nullptr; });
    ASSERT_TRUE(with_null) << with_null.error().message();
    EXPECT_FALSE(with_null->data().credential_id);
}

TEST_F(json_test, credential_round_trips_with_its_version_history) {
    credentials::credential_spec s{.provider_id = new_id(id_prefix::provider, clock.now()),
                                   .connection_id = new_id(id_prefix::connection, clock.now()),
                                   .auth_mode = auth_mode::oauth2_client_credentials,
                                   .key_vault_ref = "vault://local/t1/acme?version=1",
                                   .fingerprint = fingerprint('1'),
                                   .auth_parameters = {{"tokenUrl", "https://login.acme.example/token"},
                                                       {"clientId", "acme-client"}},
                                   .rotation_policy = credentials::rotation_policy{.rotate_every_days = 90},
                                   .expires_at = clock.now() + 24h * 365};
    auto c = credentials::integration_credential::create(ctx(), clock.now(), s).value();
    clock.advance(1h);
    c.begin_rotation("vault://local/t1/acme?version=2", fingerprint('2'), clock.now()).value();
    c.complete_rotation(clock.now()).value();
    clock.advance(1h);
    c.begin_rotation("vault://local/t1/acme?version=3", fingerprint('3'), clock.now()).value();

    auto back = round_trip(c);
    EXPECT_EQ(aggregate_to_json(back), aggregate_to_json(c));
    EXPECT_EQ(back.status(), credentials::credential_status::rotating);
    EXPECT_EQ(back.data().current_version, 2);
    EXPECT_EQ(back.data().last_rotated_at, clock.now() - 1h);
    EXPECT_EQ(back.data().expires_at, s.expires_at);
    EXPECT_EQ(back.data().auth_parameters.at("clientId").as_string(), "acme-client");
    ASSERT_EQ(back.data().versions.size(), 3u);
    EXPECT_EQ(back.data().versions[0].state, credentials::version_state::retired);
    EXPECT_EQ(back.data().versions[0].deactivated_at, clock.now() - 1h);
    EXPECT_FALSE(back.data().versions[2].activated_at);
    ASSERT_NE(back.staged_version(), nullptr);
    EXPECT_EQ(back.staged_version()->version, 3);
}

TEST_F(json_test, run_round_trips_with_attempts) {
    auto conn = connection();
    auto r = runs::integration_run::create(ctx(), clock.now(), conn, "sms.send", "idem-42").value();
    r.start(conn, true, clock.now()).value();
    r.set_request_ref("blob://req/1").value();
    r.record_attempt({.attempt = 1,
                      .status = runs::attempt_status::failed,
                      .error_class = failures::failure_category::rate_limited,
                      .http_status = 429,
                      .latency_ms = 12,
                      .started_at = clock.now()})
        .value();
    r.record_attempt({.attempt = 2, .status = runs::attempt_status::succeeded, .latency_ms = 30,
                      .started_at = clock.now() + 1s})
        .value();
    clock.advance(2s);
    r.complete(clock.now(), "SM9", "blob://res/1").value();

    auto back = round_trip(r);
    EXPECT_EQ(aggregate_to_json(back), aggregate_to_json(r));
    EXPECT_EQ(back.status(), runs::run_status::completed);
    EXPECT_EQ(back.data().idempotency_key, "idem-42");
    EXPECT_EQ(back.data().latency_ms, 2000);
    ASSERT_EQ(back.data().run_attempts.size(), 2u);
    EXPECT_EQ(back.data().run_attempts[0].error_class, failures::failure_category::rate_limited);
    EXPECT_EQ(back.data().run_attempts[0].http_status, 429);
    EXPECT_FALSE(back.data().run_attempts[1].error_class);
    EXPECT_FALSE(back.data().run_attempts[1].http_status);
}

TEST_F(json_test, failure_round_trips_with_attempts_and_escalations) {
    auto f = failures::integration_failure::record(ctx(), clock.now(), failures::failure_source::delivery,
                                                   new_id(id_prefix::delivery, clock.now()),
                                                   new_id(id_prefix::provider, clock.now()),
                                                   {.category = failures::failure_category::transient,
                                                    .error_code = "timeout",
                                                    .message = "no answer in 15 s",
                                                    .next_action = failures::next_action::retry,
                                                    .next_attempt_at = clock.now() + 5s})
                 .value();
    f.record_attempt({.category = failures::failure_category::auth, .error_code = "http_401", .message = "denied",
                      .next_action = failures::next_action::dead_letter},
                     clock.now())
        .value();
    f.escalate({.escalated_by = "alice", .reason = "needs vendor", .escalated_at = clock.now(), .ticket_ref = "INC-1"})
        .value();
    f.escalate({.escalated_by = "bob", .reason = "still failing", .escalated_at = clock.now() + 1s}).value();
    f.resolve(failures::source_outcome::dead_lettered, clock.now() + 2s).value();

    auto back = round_trip(f);
    EXPECT_EQ(aggregate_to_json(back), aggregate_to_json(f));
    EXPECT_TRUE(back.resolved());
    EXPECT_EQ(back.data().resolved_at, clock.now() + 2s);
    EXPECT_EQ(back.source_id(), *f.data().delivery_id);
    EXPECT_EQ(back.data().failure_attempts.size(), 2u);
    ASSERT_EQ(back.data().escalations.size(), 2u);
    EXPECT_EQ(back.data().escalations[0].ticket_ref, "INC-1");
    EXPECT_FALSE(back.data().escalations[1].ticket_ref);
}

TEST_F(json_test, subscription_round_trips_with_filter_and_attempt_policy) {
    webhooks::subscription_spec s{.project_id = "proj-1",
                                  .event_type = "order.*",
                                  .endpoint_url = "https://hooks.customer.example/in",
                                  .signing_secret_ref = "vault://local/t1/whsec?version=1",
                                  .filter = json::parse(R"({"and": [{"exists": {"path": "$.amount"}},
                                                                   {"in": {"path": "$.currency", "values": ["EUR"]}}]})"),
                                  .attempt_policy = webhooks::subscription_attempt_policy{.max_attempts = 4}};
    auto sub = webhooks::webhook_subscription::create(ctx(), clock.now(), s).value();
    sub.deactivate("paused").value();
    auto back = round_trip(sub);
    EXPECT_EQ(aggregate_to_json(back), aggregate_to_json(sub));
    EXPECT_FALSE(back.active());
    ASSERT_TRUE(back.data().filter);
    EXPECT_EQ(*back.data().filter, *s.filter);
    EXPECT_EQ(back.attempt_policy().max_attempts, 4);
}

TEST_F(json_test, deliveries_round_trip_in_both_directions) {
    auto sub = webhooks::webhook_subscription::create(ctx(), clock.now(),
                                                      {.project_id = "proj-1",
                                                       .event_type = "*",
                                                       .endpoint_url = "https://hooks.customer.example/in",
                                                       .signing_secret_ref = "vault://local/t1/whsec?version=1"})
                   .value();
    auto out = webhooks::webhook_delivery::outbound(ctx(), clock.now(), sub, "order.created", "evt-1", "blob://p/1")
                   .value();
    out.record_failure({.http_status = 500, .latency_ms = 9, .response_excerpt = "oops", .attempted_at = clock.now()},
                       clock.now() + 5s)
        .value();
    out.record_failure({.latency_ms = 15'000, .error = "timeout", .attempted_at = clock.now() + 5s}, clock.now() + 30s)
        .value();
    auto back = round_trip(out);
    EXPECT_EQ(aggregate_to_json(back), aggregate_to_json(out));
    EXPECT_EQ(back.status(), webhooks::delivery_status::failed);
    EXPECT_EQ(back.data().next_attempt_at, clock.now() + 30s);
    ASSERT_EQ(back.data().delivery_attempts.size(), 2u);
    EXPECT_EQ(back.data().delivery_attempts[0].response_excerpt, "oops");
    EXPECT_FALSE(back.data().delivery_attempts[1].http_status);
    EXPECT_EQ(back.data().delivery_attempts[1].error, "timeout");

    auto in = webhooks::webhook_delivery::inbound(ctx(), clock.now(), new_id(id_prefix::connection, clock.now()),
                                                  new_id(id_prefix::provider, clock.now()), "wh_1", "charge.succeeded",
                                                  "blob://in/1", "sha256:" + std::string(64, 'e'))
                  .value();
    in.accept({.signature_valid = true, .tenant_resolved = true}, clock.now()).value();
    auto in_back = round_trip(in);
    EXPECT_EQ(aggregate_to_json(in_back), aggregate_to_json(in));
    EXPECT_EQ(aggregate_to_json(in_back).at("signatureStatus").as_string(), "Verified");
    EXPECT_EQ(in_back.data().payload_hash, in.data().payload_hash);
    EXPECT_FALSE(in_back.data().subscription_id);
}

// ---- errors name the field ------------------------------------------------------------------

TEST(json_mapping, a_defaulted_field_left_out_keeps_its_default_and_a_plain_one_is_required) {
    // healthCheck: {method, path, expectStatus?}; the contract's 200 is the member's initializer.
    auto check = value_from_json<providers::health_check>(json::parse(R"({"method": "HEAD", "path": "/ping"})"));
    ASSERT_TRUE(check) << check.error().message();
    EXPECT_EQ(check->expect_status, 200);
    EXPECT_EQ(check->method, "HEAD");
    auto as_null = value_from_json<providers::health_check>(json::parse(R"({"method": "GET", "path": "/", "expectStatus": null})"));
    ASSERT_TRUE(as_null);
    EXPECT_EQ(as_null->expect_status, 200);
    auto given = value_from_json<providers::health_check>(json::parse(R"({"method": "GET", "path": "/", "expectStatus": 204})"));
    ASSERT_TRUE(given);
    EXPECT_EQ(given->expect_status, 204);
    auto wrong_type = value_from_json<providers::health_check>(json::parse(R"({"method": "GET", "path": "/", "expectStatus": "ok"})"));
    EXPECT_ERRC(wrong_type, errc::invalid_argument);
    auto no_path = value_from_json<providers::health_check>(json::parse(R"({"method": "GET"})"));
    EXPECT_ERRC(no_path, errc::invalid_argument);
    EXPECT_EQ(no_path.error().detail(), "path is required");

    auto placement = value_from_json<credentials::api_key_placement>(json::parse(R"({"name": "X-Api-Key"})"));
    ASSERT_TRUE(placement);
    EXPECT_EQ(placement->in, "header");
    EXPECT_EQ(placement->prefix, "");
}

TEST_F(json_test, a_missing_required_field_is_named_by_its_path) {
    auto conn = connection();
    auto r = read_edited(conn, [](json::object& o) { o.erase("status"); });
    EXPECT_ERRC(r, errc::invalid_argument);
    EXPECT_EQ(r.error().detail(), "status is required");

    auto nested = read_edited(conn, [](json::object& o) { o["endpoints"].as_array()[1].as_object().erase("baseUrl"); });
    EXPECT_ERRC(nested, errc::invalid_argument);
    EXPECT_EQ(nested.error().detail(), "endpoints[1].baseUrl is required");

    auto in_metadata = read_edited(conn, [](json::object& o) { o["metadata"].as_object().erase("createdBy"); });
    EXPECT_ERRC(in_metadata, errc::invalid_argument);
    EXPECT_EQ(in_metadata.error().detail(), "metadata.createdBy is required");

    auto no_metadata = read_edited(conn, [](json::object& o) { o.erase("metadata"); });
    EXPECT_ERRC(no_metadata, errc::invalid_argument);
    EXPECT_EQ(no_metadata.error().detail(), "metadata is required");

    auto null_required = read_edited(conn, [](json::object& o) { o["displayName"] = nullptr; });
    EXPECT_ERRC(null_required, errc::invalid_argument);
    EXPECT_EQ(null_required.error().detail(), "displayName is required");
}

TEST_F(json_test, a_missing_field_of_a_child_entity_is_named_by_its_path) {
    auto c = credentials::integration_credential::create(ctx(), clock.now(),
                                                         {.provider_id = new_id(id_prefix::provider, clock.now()),
                                                          .key_vault_ref = "vault://local/t1/k?version=1",
                                                          .fingerprint = fingerprint('1')})
                 .value();
    auto r = read_edited(c, [](json::object& o) { o["versions"].as_array()[0].as_object().erase("keyVaultRef"); });
    EXPECT_ERRC(r, errc::invalid_argument);
    EXPECT_EQ(r.error().detail(), "versions[0].keyVaultRef is required");
}

TEST_F(json_test, a_wrong_enum_value_lists_the_accepted_values) {
    auto conn = connection();
    auto r = read_edited(conn, [](json::object& o) { o["status"] = "active"; });
    EXPECT_ERRC(r, errc::invalid_argument);
    EXPECT_EQ(r.error().detail(), "status must be one of Pending, Active, Degraded, Retired (got \"active\")");

    auto health = read_edited(conn, [](json::object& o) { o["health"] = "Fine"; });
    EXPECT_ERRC(health, errc::invalid_argument);
    EXPECT_EQ(health.error().detail(), "health must be one of Unknown, Healthy, Degraded, Unhealthy (got \"Fine\")");

    auto c = credentials::integration_credential::create(ctx(), clock.now(),
                                                         {.provider_id = new_id(id_prefix::provider, clock.now()),
                                                          .key_vault_ref = "vault://local/t1/k?version=1",
                                                          .fingerprint = fingerprint('1')})
                 .value();
    auto nested = read_edited(c, [](json::object& o) { o["versions"].as_array()[0].as_object()["state"] = "Live"; });
    EXPECT_ERRC(nested, errc::invalid_argument);
    EXPECT_EQ(nested.error().detail(),
              "versions[0].state must be one of Staged, Active, Retired, Failed, Disabled (got \"Live\")");

    auto not_a_string = read_edited(conn, [](json::object& o) { o["authMode"] = 1; });
    EXPECT_ERRC(not_a_string, errc::invalid_argument);
    EXPECT_EQ(not_a_string.error().detail(), "authMode must be a string");
}

TEST_F(json_test, wrong_types_are_named_with_what_was_expected) {
    auto conn = connection();
    struct type_case {
        std::function<void(json::object&)> edit;
        std::string detail;
    };
    for (auto const& [edit, detail] : std::vector<type_case>{
             {[](json::object& o) { o["displayName"] = 5; }, "displayName must be a string"},
             {[](json::object& o) { o["scopes"] = "sms.send"; }, "scopes must be an array"},
             {[](json::object& o) { o["configuration"] = json::array{}; }, "configuration must be an object"},
             {[](json::object& o) { o["retryPolicy"].as_object()["maxAttempts"] = 2.5; },
              "retryPolicy.maxAttempts must be an integer"},
             {[](json::object& o) { o["retryPolicy"].as_object()["maxAttempts"] = "5"; },
              "retryPolicy.maxAttempts must be an integer"},
             {[](json::object& o) { o["metadata"].as_object()["createdAt"] = 1767225600000; },
              "metadata.createdAt must be an RFC 3339 timestamp string"},
             {[](json::object& o) { o["endpoints"] = json::array{"https://x.example"}; },
              "endpoints[0] must be an object"}}) {
        auto r = read_edited(conn, edit);
        EXPECT_ERRC(r, errc::invalid_argument);
        EXPECT_EQ(r.error().detail(), detail);
    }

    auto bad_time = read_edited(conn, [](json::object& o) { o["lastCheckedAt"] = "yesterday"; });
    EXPECT_ERRC(bad_time, errc::invalid_argument);
    EXPECT_EQ(bad_time.error().detail().rfind("lastCheckedAt: ", 0), 0u) << bad_time.error().detail();

    EXPECT_ERRC(aggregate_from_json<connections::integration_connection>(json::array{}), errc::invalid_argument);
}

TEST_F(json_test, integral_numbers_are_read_whatever_their_json_representation) {
    auto conn = connection();
    auto r = read_edited(conn, [](json::object& o) {
        o["retryPolicy"].as_object()["maxAttempts"] = 4.0;
        o["retryPolicy"].as_object()["maxDelayMs"] = std::uint64_t{2000};
    });
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->data().retry_policy->max_attempts, 4);
    EXPECT_EQ(r->data().retry_policy->max_delay_ms, 2000);
}

TEST_F(json_test, reading_applies_the_aggregates_restore_checks) {
    auto conn = connection();
    auto bad_id = read_edited(conn, [](json::object& o) { o["connectionId"] = "conn-1"; });
    EXPECT_ERRC(bad_id, errc::invalid_argument);

    auto c = credentials::integration_credential::create(ctx(), clock.now(),
                                                         {.provider_id = new_id(id_prefix::provider, clock.now()),
                                                          .key_vault_ref = "vault://local/t1/k?version=1",
                                                          .fingerprint = fingerprint('1')})
                 .value();
    c.begin_rotation("vault://local/t1/k?version=2", fingerprint('2'), clock.now()).value();
    auto two_active =
        read_edited(c, [](json::object& o) { o["versions"].as_array()[1].as_object()["state"] = "Active"; });
    EXPECT_ERRC(two_active, errc::integrity_failure);
}

// ---- value objects --------------------------------------------------------------------------

TEST(json_value_test, value_objects_round_trip_and_name_missing_fields) {
    retry_policy p{.max_attempts = 7, .initial_delay_ms = 250, .max_delay_ms = 9000};
    auto j = to_json(p);
    EXPECT_EQ(j.at("maxAttempts").as_int64(), 7);
    auto back = value_from_json<retry_policy>(j).value();
    EXPECT_EQ(back.max_attempts, 7);
    EXPECT_EQ(back.initial_delay_ms, 250);
    EXPECT_EQ(back.max_delay_ms, 9000);

    j.as_object().erase("maxDelayMs");
    auto missing = value_from_json<retry_policy>(j);
    EXPECT_ERRC(missing, errc::invalid_argument);
    EXPECT_EQ(missing.error().detail(), "maxDelayMs is required");

    auto not_object = value_from_json<retry_policy>(json::value(3));
    EXPECT_ERRC(not_object, errc::invalid_argument);
    EXPECT_EQ(not_object.error().detail(), "the document must be an object");
}

// A number too large for its field (1e999 parses as infinity, an integer past 64 bits as a
// double) is "out of range", not "is required" or a type error, and never stored as infinity.
TEST(json_numbers, too_large_for_their_field_are_out_of_range) {
    struct range_case {
        std::string text, detail;
    };
    for (auto const& [text, detail] : std::vector<range_case>{
             {R"({"requestsPerSecond": 1e999, "burst": 5})",
              "rateLimitProfile.requestsPerSecond is out of range: it must be a finite 64-bit float"},
             {R"({"requestsPerSecond": -1e999, "burst": 5})",
              "rateLimitProfile.requestsPerSecond is out of range: it must be a finite 64-bit float"},
             {R"({"requestsPerSecond": 1, "burst": 1e30})", "rateLimitProfile.burst is out of range: it must be a 64-bit integer"},
             {R"({"requestsPerSecond": 1, "burst": 1e999})", "rateLimitProfile.burst is out of range: it must be a 64-bit integer"},
             {R"({"requestsPerSecond": 1, "burst": 18446744073709551615})",
              "rateLimitProfile.burst is out of range: it must be a 64-bit integer"},
             {R"({"requestsPerSecond": 1, "burst": 2.5})", "rateLimitProfile.burst must be an integer"}}) {
        rate_limit_profile p;
        auto r = from_json(json::parse(text), p, "rateLimitProfile");
        EXPECT_ERRC(r, errc::invalid_argument);
        EXPECT_EQ(r.error().detail(), detail) << text;
    }
    int narrow = 0;
    auto too_wide = from_json(json::value(std::int64_t{3'000'000'000}), narrow, "timeoutSeconds");
    EXPECT_ERRC(too_wide, errc::invalid_argument);
    EXPECT_EQ(too_wide.error().detail(), "timeoutSeconds is out of range: it must be a 32-bit integer");
}

}  // namespace
