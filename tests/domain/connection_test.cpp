#include <integration/domain/connection.hpp>

#include <integration/domain/event.hpp>

#include "domain/fixtures.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace {

using namespace integration;
using namespace integration::connections;
using fixtures::snap;
using fixtures::tenant_ctx;

constexpr std::string_view established_event = events::event_type::connection_established;
constexpr std::string_view retired_event = events::event_type::connection_retired;
constexpr std::string_view failed_event = events::event_type::integration_failed;

health_probe_result const healthy{health_status::healthy, "200 OK"};
health_probe_result const unhealthy{health_status::unhealthy, "503 Service Unavailable"};
health_probe_result const degraded_probe{health_status::degraded, "slow: 4.2 s"};

class connection_test : public testing::Test {
protected:
    manual_clock clock;
    providers::integration_provider provider = fixtures::active_provider(clock.now());

    integration_connection pending() {
        auto spec = fixtures::connection_spec(clock.now());
        return integration_connection::create(tenant_ctx(), clock.now(), provider, spec).value();
    }
    integration_connection active() {
        auto c = pending();
        c.record_health(healthy, clock.now()).value();
        c.activate(true, clock.now()).value();
        return c;
    }
    integration_connection degraded() {
        auto c = active();
        c.record_health(unhealthy, clock.now()).value();
        return c;
    }
    integration_connection retired() {
        auto c = active();
        c.retire("customer left").value();
        return c;
    }
};

// ---- creation -------------------------------------------------------------------------------

TEST_F(connection_test, create_makes_a_pending_connection_with_unknown_health_and_no_event) {
    auto spec = fixtures::connection_spec(clock.now());
    spec.configuration = {{"accountSid", "AC123"}};
    spec.endpoints = {{.operation_class = "default", .base_url = "https://eu.api.acme.example", .region = "eu"}};
    spec.scopes = {"sms.send"};
    auto c = integration_connection::create(tenant_ctx(), clock.now(), provider, spec).value();

    EXPECT_TRUE(is_valid_id(c.id(), id_prefix::connection)) << c.id();
    EXPECT_EQ(c.status(), connection_status::pending);
    EXPECT_EQ(c.data().health, health_status::unknown);
    EXPECT_EQ(c.data().provider_id, provider.id());
    EXPECT_EQ(c.data().auth_mode, auth_mode::api_key) << "the auth mode comes from the provider";
    EXPECT_EQ(c.data().configuration.at("accountSid").as_string(), "AC123");
    EXPECT_EQ(c.meta().tenant_id, "t1");
    EXPECT_FALSE(c.data().established_at);
    EXPECT_FALSE(c.data().last_checked_at);
    EXPECT_TRUE(c.pending_events().empty());
}

TEST_F(connection_test, create_refuses_secret_material_in_the_configuration) {
    // Kept in the row and shown by every read and event: a secret belongs in the credential.
    for (auto bad : {boost::json::object{{"authToken", "AC-live-1"}},
                     boost::json::object{{"region", "eu"}, {"sftp", boost::json::object{{"password", "hunter2"}}}},
                     boost::json::object{{"keys", boost::json::array{boost::json::object{{"client_secret", "s"}}}}}}) {
        auto spec = fixtures::connection_spec(clock.now());
        spec.configuration = bad;
        auto c = integration_connection::create(tenant_ctx(), clock.now(), provider, spec);
        ASSERT_FALSE(c) << boost::json::serialize(bad);
        EXPECT_EQ(c.error(), errc::invariant_violation);
        EXPECT_NE(c.error().detail().find("configuration."), std::string::npos) << c.error().detail();
        EXPECT_EQ(c.error().detail().find("hunter2"), std::string::npos) << c.error().detail();
    }
    auto spec = fixtures::connection_spec(clock.now());
    spec.configuration = {{"tokenUrl", "https://login.example/token"}, {"tokenLifetime", 3600}};
    EXPECT_TRUE(integration_connection::create(tenant_ctx(), clock.now(), provider, spec))
        << "a URL or a number under such a name is no secret";
}

TEST_F(connection_test, provider_must_be_registered_and_active) {
    auto registered = fixtures::registered_provider(clock.now());
    EXPECT_ERRC(integration_connection::create(tenant_ctx(), clock.now(), registered,
                                               fixtures::connection_spec(clock.now())),
                errc::invariant_violation);
}

TEST_F(connection_test, a_deprecated_provider_accepts_no_new_connections) {
    provider.deprecate("end of life").value();
    auto spec = fixtures::connection_spec(clock.now());
    auto r = integration_connection::create(tenant_ctx(), clock.now(), provider, spec);
    EXPECT_ERRC(r, errc::invariant_violation);
    EXPECT_NE(r.error().detail().find("Deprecated"), std::string::npos) << r.error().detail();
}

struct bad_connection_spec {
    std::string name;
    std::function<void(connection_spec&)> mutate;
};

class connection_spec_rejects : public testing::TestWithParam<bad_connection_spec> {};

TEST_P(connection_spec_rejects, with_invalid_argument) {
    manual_clock clock;
    auto provider = fixtures::active_provider(clock.now());
    auto spec = fixtures::connection_spec(clock.now());
    GetParam().mutate(spec);
    EXPECT_ERRC(integration_connection::create(tenant_ctx(), clock.now(), provider, spec), errc::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(
    connection, connection_spec_rejects,
    testing::Values(
        bad_connection_spec{"empty_project", [](connection_spec& s) { s.project_id = ""; }},
        bad_connection_spec{"empty_display_name", [](connection_spec& s) { s.display_name = ""; }},
        bad_connection_spec{"credential_id_of_another_kind",
                            [](connection_spec& s) { s.credential_id = "conn-01JD3Q8V6X4T2M9R5B7N1K0FZC"; }},
        bad_connection_spec{"credential_id_not_a_ulid", [](connection_spec& s) { s.credential_id = "cred-123"; }},
        bad_connection_spec{"endpoint_without_scheme",
                            [](connection_spec& s) { s.endpoints = {{"default", "api.acme.example", {}}}; }},
        bad_connection_spec{"endpoint_without_class",
                            [](connection_spec& s) { s.endpoints = {{"", "https://api.acme.example", {}}}; }},
        bad_connection_spec{"empty_scope", [](connection_spec& s) { s.scopes = {""}; }},
        bad_connection_spec{"scope_the_provider_does_not_offer", [](connection_spec& s) { s.scopes = {"sms.sned"}; }},
        bad_connection_spec{"no_credential", [](connection_spec& s) { s.credential_id.reset(); }},
        bad_connection_spec{"zero_budget",
                            [](connection_spec& s) { s.rate_limit_budget = rate_limit_budget{.burst = 0}; }},
        bad_connection_spec{"budget_below_the_rate_floor",
                            [](connection_spec& s) { s.rate_limit_budget = rate_limit_budget{.requests_per_second = 0.000001}; }},
        bad_connection_spec{"budget_above_the_burst_cap",
                            [](connection_spec& s) { s.rate_limit_budget = rate_limit_budget{.burst = 1'000'000'000}; }},
        bad_connection_spec{"zero_attempts",
                            [](connection_spec& s) { s.retry_policy = retry_policy{.max_attempts = 0}; }},
        bad_connection_spec{"initial_delay_above_max", [](connection_spec& s) {
                                s.retry_policy = retry_policy{.initial_delay_ms = 10'000, .max_delay_ms = 1'000};
                            }},
        // 9e18 ms passed and made the next attempt's time overflow into the past: retried at once.
        bad_connection_spec{"max_delay_over_a_day", [](connection_spec& s) {
                                s.retry_policy = retry_policy{.initial_delay_ms = 1'000, .max_delay_ms = 9'000'000'000'000'000'000};
                            }}),
    [](auto const& info) { return info.param.name; });

// ---- Pending → Active -----------------------------------------------------------------------

TEST_F(connection_test, pending_to_active_with_resolvable_credential_and_passing_probe_raises_established) {
    auto c = pending();
    ASSERT_TRUE(c.record_health(healthy, clock.now()));
    EXPECT_TRUE(c.pending_events().empty()) << "a passing probe raises nothing";
    clock.advance(std::chrono::milliseconds{250});
    ASSERT_TRUE(c.activate(true, clock.now()));

    EXPECT_EQ(c.status(), connection_status::active);
    EXPECT_EQ(c.data().established_at, clock.now());
    ASSERT_EQ(c.pending_events().size(), 1u);
    auto const& e = c.pending_events()[0];
    EXPECT_EQ(e.event_type, established_event);
    EXPECT_EQ(e.data.at("connectionId").as_string(), c.id());
    EXPECT_EQ(e.data.at("providerId").as_string(), provider.id());
    EXPECT_EQ(e.data.at("projectId").as_string(), "proj-1");
    EXPECT_EQ(e.data.at("credentialId").as_string(), *c.data().credential_id);
}

TEST_F(connection_test, a_connection_needs_a_credential_id_to_be_made_and_to_be_active) {
    auto spec = fixtures::connection_spec(clock.now());
    spec.credential_id.reset();
    auto made = integration_connection::create(tenant_ctx(), clock.now(), provider, spec);
    EXPECT_ERRC(made, errc::invalid_argument);
    EXPECT_NE(made.error().detail().find("credentialId is required"), std::string::npos) << made.error().detail();

    // One stored without it (before creation required it) stays Pending until one is attached.
    auto stored = pending();
    auto data = stored.data();
    data.credential_id.reset();
    auto c = integration_connection::restore(stored.meta(), data).value();
    c.record_health(healthy, clock.now()).value();
    auto before = snap(c);
    auto r = c.activate(true, clock.now());
    EXPECT_ERRC(r, errc::invariant_violation);
    EXPECT_NE(r.error().detail().find("credentialId"), std::string::npos) << r.error().detail();
    EXPECT_EQ(c.status(), connection_status::pending);
    EXPECT_UNCHANGED(c, before);

    ASSERT_TRUE(c.attach_credential(new_id(id_prefix::credential, clock.now())));
    EXPECT_TRUE(c.activate(true, clock.now())) << "attaching a credential lifts the block";
}

TEST_F(connection_test, activation_needs_the_credential_to_resolve) {
    auto c = pending();
    c.record_health(healthy, clock.now()).value();
    auto before = snap(c);
    EXPECT_ERRC(c.activate(false, clock.now()), errc::invariant_violation);
    EXPECT_UNCHANGED(c, before);
}

TEST_F(connection_test, activation_needs_a_passing_health_test) {
    auto never_probed = pending();
    auto before = snap(never_probed);
    auto r = never_probed.activate(true, clock.now());
    EXPECT_ERRC(r, errc::invariant_violation);
    EXPECT_NE(r.error().detail().find("health"), std::string::npos) << r.error().detail();
    EXPECT_UNCHANGED(never_probed, before);

    for (auto const& probe : {unhealthy, degraded_probe}) {
        auto c = pending();
        c.record_health(healthy, clock.now()).value();
        c.record_health(probe, clock.now()).value();  // the latest probe decides
        auto failing = snap(c);
        EXPECT_ERRC(c.activate(true, clock.now()), errc::invariant_violation);
        EXPECT_EQ(c.status(), connection_status::pending);
        EXPECT_UNCHANGED(c, failing);
    }
}

TEST_F(connection_test, a_failed_probe_on_a_pending_connection_raises_failed_but_stays_pending) {
    auto c = pending();
    EXPECT_FALSE(c.data().health_reason);
    ASSERT_TRUE(c.record_health(unhealthy, clock.now()));
    EXPECT_EQ(c.status(), connection_status::pending);
    EXPECT_EQ(c.data().health, health_status::unhealthy);
    EXPECT_EQ(c.data().health_reason, unhealthy.detail);  // why it is still Pending
    EXPECT_EQ(fixtures::event_types(c), std::vector<std::string>{std::string(failed_event)});
}

TEST_F(connection_test, active_degraded_and_retired_cannot_be_activated) {
    for (auto c : {active(), degraded(), retired()}) {
        auto before = snap(c);
        auto status = c.status();
        EXPECT_ERRC(c.activate(true, clock.now()), errc::invalid_state);
        EXPECT_EQ(c.status(), status);
        EXPECT_UNCHANGED(c, before);
    }
}

// ---- Active ⇄ Degraded ----------------------------------------------------------------------

TEST_F(connection_test, active_to_degraded_on_a_failed_probe_raises_integration_failed) {
    auto c = active();
    auto events_before = c.pending_events().size();
    clock.advance(std::chrono::minutes{5});
    ASSERT_TRUE(c.record_health(unhealthy, clock.now()));

    EXPECT_EQ(c.status(), connection_status::degraded);
    EXPECT_EQ(c.data().health, health_status::unhealthy);
    EXPECT_EQ(c.data().last_checked_at, clock.now());
    ASSERT_EQ(c.pending_events().size(), events_before + 1);
    auto const& e = c.pending_events().back();
    EXPECT_EQ(e.event_type, failed_event);
    EXPECT_EQ(e.data.at("source").as_string(), "HealthProbe");
    EXPECT_EQ(e.data.at("connectionId").as_string(), c.id());
    EXPECT_EQ(e.data.at("health").as_string(), "Unhealthy");
    EXPECT_EQ(e.data.at("message").as_string(), "503 Service Unavailable");
}

TEST_F(connection_test, a_degraded_probe_also_degrades_an_active_connection) {
    auto c = active();
    ASSERT_TRUE(c.record_health(degraded_probe, clock.now()));
    EXPECT_EQ(c.status(), connection_status::degraded);
    EXPECT_EQ(c.data().health, health_status::degraded);
    EXPECT_EQ(c.pending_events().back().event_type, failed_event);
}

TEST_F(connection_test, degraded_to_active_on_a_passing_probe_raises_nothing) {
    auto c = degraded();
    auto events_before = c.pending_events().size();
    ASSERT_TRUE(c.record_health(healthy, clock.now()));
    EXPECT_EQ(c.status(), connection_status::active);
    EXPECT_EQ(c.data().health, health_status::healthy);
    EXPECT_EQ(c.pending_events().size(), events_before);
}

TEST_F(connection_test, degraded_stays_degraded_and_reports_each_further_failure) {
    auto c = degraded();
    auto events_before = c.pending_events().size();
    ASSERT_TRUE(c.record_health(unhealthy, clock.now()));
    EXPECT_EQ(c.status(), connection_status::degraded);
    EXPECT_EQ(c.pending_events().size(), events_before + 1);
}

TEST_F(connection_test, a_probe_must_report_a_verdict) {
    auto c = active();
    auto before = snap(c);
    EXPECT_ERRC(c.record_health({health_status::unknown, "?"}, clock.now()), errc::invalid_argument);
    EXPECT_UNCHANGED(c, before);
}

// ---- → Retired ------------------------------------------------------------------------------

TEST_F(connection_test, pending_active_and_degraded_retire_with_retired_event) {
    for (auto c : {pending(), active(), degraded()}) {
        auto events_before = c.pending_events().size();
        ASSERT_TRUE(c.retire("customer left"));
        EXPECT_EQ(c.status(), connection_status::retired);
        ASSERT_EQ(c.pending_events().size(), events_before + 1);
        auto const& e = c.pending_events().back();
        EXPECT_EQ(e.event_type, retired_event);
        EXPECT_EQ(e.data.at("connectionId").as_string(), c.id());
        EXPECT_EQ(e.data.at("reason").as_string(), "customer left");
    }
}

TEST_F(connection_test, retired_is_terminal) {
    auto c = retired();
    auto before = snap(c);
    EXPECT_ERRC(c.retire("again"), errc::invalid_state);
    EXPECT_ERRC(c.record_health(healthy, clock.now()), errc::invalid_state);
    EXPECT_ERRC(c.attach_credential(new_id(id_prefix::credential, clock.now())), errc::invalid_state);
    EXPECT_ERRC(c.activate(true, clock.now()), errc::invalid_state);
    EXPECT_EQ(c.status(), connection_status::retired);
    EXPECT_UNCHANGED(c, before);
}

TEST_F(connection_test, attach_credential_refuses_an_id_that_is_not_a_credential) {
    auto c = pending();
    auto before = snap(c);
    EXPECT_ERRC(c.attach_credential("conn-01JD3Q8V6X4T2M9R5B7N1K0FZC"), errc::invalid_argument);
    EXPECT_UNCHANGED(c, before);
}

// ---- "Cannot execute runs while status is Retired" ------------------------------------------

TEST_F(connection_test, runs_execute_on_active_healthy_or_permitted_degraded_connections_only) {
    auto a = active();
    EXPECT_TRUE(a.ensure_can_execute(false));
    EXPECT_TRUE(a.ensure_can_execute(true));

    auto d = active();
    d.record_health(degraded_probe, clock.now()).value();
    ASSERT_EQ(d.status(), connection_status::degraded);
    EXPECT_TRUE(d.ensure_can_execute(true));
    auto r = d.ensure_can_execute(false);
    EXPECT_ERRC(r, errc::invalid_state);
    EXPECT_NE(r.error().detail().find("Degraded"), std::string::npos) << r.error().detail();

    // "Degraded-permitted" is a degraded service, not a failing one: Unhealthy runs nothing.
    auto u = degraded();
    ASSERT_EQ(u.data().health, health_status::unhealthy);
    for (bool permitted : {false, true}) {
        auto refused = u.ensure_can_execute(permitted);
        EXPECT_ERRC(refused, errc::invalid_state);
        EXPECT_NE(refused.error().detail().find("Unhealthy"), std::string::npos) << refused.error().detail();
    }

    for (auto c : {pending(), retired()}) {
        EXPECT_ERRC(c.ensure_can_execute(false), errc::invalid_state);
        EXPECT_ERRC(c.ensure_can_execute(true), errc::invalid_state);
    }
    auto rr = retired().ensure_can_execute(true);
    ASSERT_FALSE(rr);
    EXPECT_NE(rr.error().detail().find("Retired"), std::string::npos) << rr.error().detail();
}

TEST_F(connection_test, restore_refuses_an_id_without_the_connection_prefix) {
    auto c = pending();
    auto d = c.data();
    d.connection_id = new_id(id_prefix::run, clock.now());
    EXPECT_ERRC(integration_connection::restore(c.meta(), d), errc::invalid_argument);
}

}  // namespace
