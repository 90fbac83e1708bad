#include <integration/domain/provider.hpp>

#include <integration/domain/event.hpp>
#include <integration/services/registry.hpp>

#include "domain/fixtures.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace {

using namespace integration;
using namespace integration::providers;
using fixtures::registered_provider;
using fixtures::sms_provider_spec;
using fixtures::snap;
using fixtures::tenant_ctx;

constexpr std::string_view registered_event = events::event_type::provider_registered;
constexpr std::string_view deprecated_event = events::event_type::provider_deprecated;

class provider_test : public testing::Test {
protected:
    manual_clock clock;
};

// ---- registration ---------------------------------------------------------------------------

TEST_F(provider_test, register_creates_a_registered_tenant_provider_and_raises_registered) {
    auto ctx = tenant_ctx();
    auto p = integration_provider::register_new(ctx, clock.now(), sms_provider_spec()).value();

    EXPECT_TRUE(is_valid_id(p.id(), id_prefix::provider)) << p.id();
    EXPECT_EQ(p.status(), provider_status::registered);
    EXPECT_FALSE(p.is_global());
    EXPECT_EQ(p.meta().tenant_id, "t1");
    EXPECT_EQ(p.meta().created_by, "alice");
    EXPECT_EQ(p.meta().created_at, clock.now());
    EXPECT_EQ(p.meta().version, 0);
    EXPECT_EQ(p.data().key, "acme-sms");

    ASSERT_EQ(p.pending_events().size(), 1u);
    auto const& e = p.pending_events().front();
    EXPECT_EQ(e.event_type, registered_event);
    EXPECT_EQ(e.data.at("providerId").as_string(), p.id());
    EXPECT_EQ(e.data.at("key").as_string(), "acme-sms");
    EXPECT_EQ(e.data.at("category").as_string(), "Communication");
    EXPECT_EQ(e.data.at("scope").as_string(), "tenant");
}

TEST_F(provider_test, ids_of_providers_registered_later_sort_later) {
    auto first = registered_provider(clock.now(), "a");
    clock.advance(std::chrono::milliseconds{1});
    auto second = registered_provider(clock.now(), "b");
    EXPECT_LT(first.id(), second.id());
}

struct bad_spec_case {
    std::string name;
    std::function<void(provider_spec&)> mutate;
    std::string field;  // the detail must name it
};

class provider_spec_rejects : public testing::TestWithParam<bad_spec_case> {};

TEST_P(provider_spec_rejects, with_invalid_argument_naming_the_field) {
    auto spec = sms_provider_spec();
    GetParam().mutate(spec);
    manual_clock clock;
    auto r = integration_provider::register_new(tenant_ctx(), clock.now(), spec);
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error() == errc::invalid_argument) << r.error().message();
    EXPECT_NE(r.error().detail().find(GetParam().field), std::string::npos) << r.error().detail();
    EXPECT_FALSE(validate(spec));
}

INSTANTIATE_TEST_SUITE_P(
    provider, provider_spec_rejects,
    testing::Values(
        bad_spec_case{"empty_key", [](provider_spec& s) { s.key = ""; }, "key"},
        bad_spec_case{"upper_case_key", [](provider_spec& s) { s.key = "Acme"; }, "key"},
        bad_spec_case{"key_starting_with_dash", [](provider_spec& s) { s.key = "-acme"; }, "key"},
        bad_spec_case{"key_with_space", [](provider_spec& s) { s.key = "acme sms"; }, "key"},
        bad_spec_case{"key_too_long", [](provider_spec& s) { s.key = std::string(65, 'a'); }, "key"},
        bad_spec_case{"empty_display_name", [](provider_spec& s) { s.display_name = ""; }, "displayName"},
        bad_spec_case{"control_char_display_name", [](provider_spec& s) { s.display_name = "Acme\nSMS"; },
                      "displayName"},
        bad_spec_case{"ftp_base_url", [](provider_spec& s) { s.base_url = "ftp://acme.example"; }, "baseUrl"},
        bad_spec_case{"base_url_without_host", [](provider_spec& s) { s.base_url = "https://"; }, "baseUrl"},
        bad_spec_case{"relative_base_url", [](provider_spec& s) { s.base_url = "/v1"; }, "baseUrl"},
        bad_spec_case{"duplicate_capability",
                      [](provider_spec& s) { s.capabilities = {"sms.send", "sms.send"}; }, "sms.send"},
        bad_spec_case{"empty_capability", [](provider_spec& s) { s.capabilities = {""}; }, "capabilities"},
        bad_spec_case{"environment_without_url",
                      [](provider_spec& s) { s.environments = {{"sandbox", "sandbox.acme.example"}}; },
                      "environments[].baseUrl"},
        bad_spec_case{"zero_rate_limit",
                      [](provider_spec& s) { s.rate_limit_profile = rate_limit_profile{.requests_per_second = 0}; },
                      "requestsPerSecond"},
        bad_spec_case{"rate_limit_below_its_floor",
                      [](provider_spec& s) { s.rate_limit_profile = rate_limit_profile{.requests_per_second = 0.000001}; },
                      "requestsPerSecond must be between 0.001"},
        bad_spec_case{"burst_above_its_cap",
                      [](provider_spec& s) { s.rate_limit_profile = rate_limit_profile{.burst = 1'000'000'000}; },
                      "burst must be between 1 and 100000"},
        bad_spec_case{"health_check_delete",
                      [](provider_spec& s) { s.health_check = health_check{.method = "DELETE"}; },
                      "healthCheck.method"},
        bad_spec_case{"health_check_relative_path",
                      [](provider_spec& s) { s.health_check = health_check{.path = "health"}; }, "healthCheck.path"},
        bad_spec_case{"health_check_path_with_a_newline",
                      [](provider_spec& s) { s.health_check = health_check{.path = "/health\r\nX-Injected: 1"}; },
                      "healthCheck.path"},
        bad_spec_case{"health_check_path_with_a_nul",
                      [](provider_spec& s) { s.health_check = health_check{.path = std::string("/health\0x", 9)}; },
                      "healthCheck.path"},
        bad_spec_case{"health_check_path_with_a_tab",
                      [](provider_spec& s) { s.health_check = health_check{.path = "/a\tb"}; }, "healthCheck.path"},
        bad_spec_case{"health_check_path_with_a_space",
                      [](provider_spec& s) { s.health_check = health_check{.path = "/health HTTP/1.0"}; },
                      "healthCheck.path"},
        bad_spec_case{"health_check_path_with_del",
                      [](provider_spec& s) { s.health_check = health_check{.path = "/a\x7f"}; }, "healthCheck.path"},
        bad_spec_case{"health_check_bad_status",
                      [](provider_spec& s) { s.health_check = health_check{.expect_status = 99}; },
                      "healthCheck.expectStatus"}),
    [](auto const& info) { return info.param.name; });

TEST_F(provider_test, register_accepts_optional_environments_limits_and_health_check) {
    auto spec = sms_provider_spec();
    spec.environments = {{"sandbox", "https://sandbox.acme.example"}, {"production", "https://api.acme.example"}};
    spec.rate_limit_profile = rate_limit_profile{.requests_per_second = 2.5, .burst = 5};
    spec.health_check = health_check{.method = "HEAD", .path = "/status", .expect_status = 204};
    auto p = integration_provider::register_new(tenant_ctx(), clock.now(), spec).value();
    ASSERT_EQ(p.data().environments.size(), 2u);
    EXPECT_EQ(p.data().environments[0].name, "sandbox");
    EXPECT_EQ(p.data().health_check->expect_status, 204);
}

TEST_F(provider_test, global_provider_needs_an_admin_context) {
    auto spec = sms_provider_spec();
    spec.scope = provider_scope::global;
    EXPECT_ERRC(integration_provider::register_new(tenant_ctx(), clock.now(), spec), errc::forbidden);

    auto p = integration_provider::register_new(fixtures::admin_ctx(), clock.now(), spec).value();
    EXPECT_TRUE(p.is_global());
    EXPECT_EQ(p.meta().tenant_id, "") << "global providers belong to no tenant";
    ASSERT_EQ(p.pending_events().size(), 1u);
    EXPECT_EQ(p.pending_events()[0].data.at("scope").as_string(), "global");
}

TEST_F(provider_test, supports_only_declared_capabilities) {
    auto p = registered_provider(clock.now());
    EXPECT_TRUE(p.supports("sms.send"));
    EXPECT_TRUE(p.supports("sms.status"));
    EXPECT_FALSE(p.supports("voice.call"));
    EXPECT_FALSE(p.supports("sms"));
}

// ---- transitions ----------------------------------------------------------------------------

TEST_F(provider_test, registered_to_active_needs_an_active_client_and_raises_no_event) {
    auto p = registered_provider(clock.now());
    ASSERT_TRUE(p.activate(1));
    EXPECT_EQ(p.status(), provider_status::active);
    EXPECT_EQ(fixtures::event_types(p), std::vector<std::string>{std::string(registered_event)});
}

TEST_F(provider_test, activation_without_an_active_client_is_an_invariant_violation) {
    auto p = registered_provider(clock.now());
    auto before = snap(p);
    auto r = p.activate(0);
    EXPECT_ERRC(r, errc::invariant_violation);
    EXPECT_NE(r.error().detail().find("API client"), std::string::npos) << r.error().detail();
    EXPECT_EQ(p.status(), provider_status::registered);
    EXPECT_UNCHANGED(p, before);
}

TEST_F(provider_test, registered_to_deprecated_raises_deprecated_with_reason) {
    auto p = registered_provider(clock.now());
    ASSERT_TRUE(p.deprecate("vendor shut down"));
    EXPECT_EQ(p.status(), provider_status::deprecated);
    ASSERT_EQ(p.pending_events().size(), 2u);
    auto const& e = p.pending_events().back();
    EXPECT_EQ(e.event_type, deprecated_event);
    EXPECT_EQ(e.data.at("providerId").as_string(), p.id());
    EXPECT_EQ(e.data.at("key").as_string(), "acme-sms");
    EXPECT_EQ(e.data.at("reason").as_string(), "vendor shut down");
}

TEST_F(provider_test, active_to_deprecated_raises_deprecated) {
    auto p = fixtures::active_provider(clock.now());
    ASSERT_TRUE(p.deprecate("replaced"));
    EXPECT_EQ(p.status(), provider_status::deprecated);
    EXPECT_EQ(p.pending_events().back().event_type, deprecated_event);
}

TEST_F(provider_test, active_cannot_be_activated_again) {
    auto p = fixtures::active_provider(clock.now());
    auto before = snap(p);
    EXPECT_ERRC(p.activate(3), errc::invalid_state);
    EXPECT_EQ(p.status(), provider_status::active);
    EXPECT_UNCHANGED(p, before);
}

TEST_F(provider_test, deprecated_cannot_be_activated) {
    auto p = registered_provider(clock.now());
    p.deprecate("gone").value();
    auto before = snap(p);
    auto r = p.activate(1);
    EXPECT_ERRC(r, errc::invalid_state);
    EXPECT_NE(r.error().detail().find("Deprecated"), std::string::npos) << r.error().detail();
    EXPECT_EQ(p.status(), provider_status::deprecated);
    EXPECT_UNCHANGED(p, before);
}

TEST_F(provider_test, deprecated_cannot_be_deprecated_again) {
    auto p = registered_provider(clock.now());
    p.deprecate("gone").value();
    auto before = snap(p);
    EXPECT_ERRC(p.deprecate("again"), errc::invalid_state);
    EXPECT_UNCHANGED(p, before);
}

// ---- "A Deprecated provider accepts no new connections" --------------------------------------

TEST_F(provider_test, only_an_active_provider_accepts_connections) {
    auto registered = registered_provider(clock.now());
    EXPECT_ERRC(registered.ensure_accepts_connections(), errc::invariant_violation);

    auto active = fixtures::active_provider(clock.now());
    EXPECT_TRUE(active.ensure_accepts_connections());

    active.deprecate("end of life").value();
    auto r = active.ensure_accepts_connections();
    EXPECT_ERRC(r, errc::invariant_violation);
    EXPECT_NE(r.error().detail().find("Deprecated"), std::string::npos) << r.error().detail();
}

// ---- the aggregate base ---------------------------------------------------------------------

TEST_F(provider_test, take_events_hands_the_pending_events_over_once) {
    auto p = registered_provider(clock.now());
    auto taken = p.take_events();
    ASSERT_EQ(taken.size(), 1u);
    EXPECT_EQ(taken[0].event_type, registered_event);
    EXPECT_TRUE(p.pending_events().empty());
    EXPECT_TRUE(p.take_events().empty());
}

TEST_F(provider_test, mark_saved_stamps_version_and_updater_and_the_first_save_sets_the_creation) {
    auto p = registered_provider(clock.now());
    clock.advance(std::chrono::milliseconds{1500});
    auto first_save = clock.now();
    p.mark_saved("alice", first_save, 1);
    EXPECT_EQ(p.meta().created_at, first_save);
    clock.advance(std::chrono::seconds{2});
    p.mark_saved("bob", clock.now(), 2);
    EXPECT_EQ(p.meta().version, 2);
    EXPECT_EQ(p.meta().created_by, "alice");
    EXPECT_EQ(p.meta().created_at, first_save) << "later saves keep the creation stamp";
    EXPECT_EQ(p.meta().updated_by, "bob");
    EXPECT_EQ(p.meta().updated_at, clock.now());
}

TEST_F(provider_test, restore_refuses_an_id_without_the_provider_prefix) {
    auto p = registered_provider(clock.now());
    auto d = p.data();
    d.provider_id = new_id(id_prefix::connection, clock.now());
    EXPECT_ERRC(integration_provider::restore(p.meta(), d), errc::invalid_argument);
}

// ---- registry: invariants spanning the store ------------------------------------------------

class provider_registry_test : public testing::Test {
protected:
    manual_clock clock;
    fixtures::temp_store store{clock};
    registry reg{*store, clock, net::egress_policy{}};
};

TEST_F(provider_registry_test, key_is_unique_within_a_tenant) {
    auto ctx = tenant_ctx();
    ASSERT_TRUE(reg.register_provider(ctx, sms_provider_spec("acme")));
    auto dup = sms_provider_spec("acme");
    dup.display_name = "Another Acme";
    auto r = reg.register_provider(ctx, dup);
    EXPECT_ERRC(r, errc::already_exists);
    EXPECT_NE(r.error().detail().find("acme"), std::string::npos) << r.error().detail();
}

TEST_F(provider_registry_test, the_same_key_may_exist_in_another_tenant) {
    ASSERT_TRUE(reg.register_provider(tenant_ctx("t1"), sms_provider_spec("acme")));
    EXPECT_TRUE(reg.register_provider(tenant_ctx("t2"), sms_provider_spec("acme")));
}

TEST_F(provider_registry_test, key_is_unique_within_the_global_scope) {
    auto spec = sms_provider_spec("acme");
    spec.scope = provider_scope::global;
    ASSERT_TRUE(reg.register_provider(fixtures::admin_ctx("t1"), spec));
    EXPECT_ERRC(reg.register_provider(fixtures::admin_ctx("t2"), spec), errc::already_exists);
}

TEST_F(provider_registry_test, provider_becomes_active_only_after_one_of_its_clients_is_active) {
    auto ctx = tenant_ctx();
    auto p = reg.register_provider(ctx, sms_provider_spec()).value();
    EXPECT_ERRC(reg.activate_provider(ctx, p.id()), errc::invariant_violation);

    // A Registered client is activated with it, in the same commit: the provider is Active only
    // with an Active client.
    auto c = reg.register_client(ctx, p.id(), fixtures::sms_client_spec()).value();
    auto active = reg.activate_provider(ctx, p.id());
    ASSERT_TRUE(active) << active.error().message();
    EXPECT_EQ(active->status(), provider_status::active);
    EXPECT_ERRC(reg.activate_client(ctx, c.id()), errc::invalid_state);  // Active already
}

TEST_F(provider_registry_test, deprecated_provider_takes_no_new_clients) {
    auto ctx = tenant_ctx();
    auto p = reg.register_provider(ctx, sms_provider_spec()).value();
    ASSERT_TRUE(reg.deprecate_provider(ctx, p.id(), "end of life"));
    EXPECT_ERRC(reg.register_client(ctx, p.id(), fixtures::sms_client_spec()), errc::invariant_violation);
}

}  // namespace
