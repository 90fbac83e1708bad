#include <integration/domain/api_client.hpp>

#include <integration/domain/event.hpp>
#include <integration/services/registry.hpp>

#include "domain/fixtures.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <string>

namespace {

using namespace integration;
using namespace integration::providers;
using fixtures::sms_client_spec;
using fixtures::snap;
using fixtures::tenant_ctx;

constexpr std::string_view registered_event = events::event_type::api_client_registered;
constexpr std::string_view deprecated_event = events::event_type::api_client_deprecated;

class api_client_test : public testing::Test {
protected:
    manual_clock clock;
    integration_provider provider = fixtures::registered_provider(clock.now());

    external_api_client registered_client(std::string version = "1.0.0") {
        return external_api_client::register_new(tenant_ctx(), clock.now(), provider, sms_client_spec(version))
            .value();
    }
    external_api_client active_client() {
        auto c = registered_client();
        c.activate().value();
        return c;
    }
    external_api_client deprecated_client() {
        auto c = registered_client();
        c.deprecate().value();
        return c;
    }
};

// ---- registration ---------------------------------------------------------------------------

TEST_F(api_client_test, register_creates_a_registered_client_and_raises_registered) {
    auto c = registered_client();
    EXPECT_TRUE(is_valid_id(c.id(), id_prefix::api_client)) << c.id();
    EXPECT_EQ(c.status(), client_status::registered);
    EXPECT_EQ(c.data().provider_id, provider.id());
    EXPECT_EQ(c.meta().tenant_id, "t1");
    ASSERT_EQ(c.data().versions.size(), 1u);
    EXPECT_EQ(c.data().versions[0].version, "1.0.0");
    EXPECT_EQ(c.data().versions[0].registered_at, clock.now());

    ASSERT_EQ(c.pending_events().size(), 1u);
    auto const& e = c.pending_events()[0];
    EXPECT_EQ(e.event_type, registered_event);
    EXPECT_EQ(e.data.at("apiClientId").as_string(), c.id());
    EXPECT_EQ(e.data.at("providerId").as_string(), provider.id());
    EXPECT_EQ(e.data.at("assemblyName").as_string(), "Acme.Sms.ApiClient");
    EXPECT_EQ(e.data.at("version").as_string(), "1.0.0");
}

TEST_F(api_client_test, a_client_may_only_declare_capabilities_its_provider_supports) {
    auto spec = sms_client_spec();
    spec.capabilities = {"sms.send", "voice.call"};
    auto r = external_api_client::register_new(tenant_ctx(), clock.now(), provider, spec);
    EXPECT_ERRC(r, errc::invariant_violation);
    EXPECT_NE(r.error().detail().find("voice.call"), std::string::npos) << r.error().detail();

    spec.capabilities = {"sms.send", "sms.status"};
    EXPECT_TRUE(external_api_client::register_new(tenant_ctx(), clock.now(), provider, spec));
}

TEST_F(api_client_test, operations_must_map_declared_capabilities_with_a_method_and_absolute_path) {
    auto not_declared = sms_client_spec();
    not_declared.operations = {{.operation = "sms.status", .method = "GET", .path = "/v1/messages/{id}"}};
    auto r = external_api_client::register_new(tenant_ctx(), clock.now(), provider, not_declared);
    EXPECT_ERRC(r, errc::invalid_argument);
    EXPECT_NE(r.error().detail().find("sms.status"), std::string::npos) << r.error().detail();

    auto bad_method = sms_client_spec();
    bad_method.operations[0].method = "post";
    EXPECT_ERRC(external_api_client::register_new(tenant_ctx(), clock.now(), provider, bad_method),
                errc::invalid_argument);

    auto bad_path = sms_client_spec();
    bad_path.operations[0].path = "v1/messages";
    EXPECT_ERRC(external_api_client::register_new(tenant_ctx(), clock.now(), provider, bad_path),
                errc::invalid_argument);
}

TEST_F(api_client_test, an_absurd_rate_limit_profile_is_refused_naming_its_bound) {
    auto tiny = sms_client_spec();
    tiny.rate_limit_profile = rate_limit_profile{.requests_per_second = 0.000001, .burst = 1};
    auto r = external_api_client::register_new(tenant_ctx(), clock.now(), provider, tiny);
    EXPECT_ERRC(r, errc::invalid_argument);
    EXPECT_NE(r.error().detail().find("between 0.001"), std::string::npos) << r.error().detail();
    auto huge = sms_client_spec();
    huge.rate_limit_profile = rate_limit_profile{.requests_per_second = 10, .burst = 1'000'000'000};
    EXPECT_ERRC(external_api_client::register_new(tenant_ctx(), clock.now(), provider, huge), errc::invalid_argument);
}

TEST_F(api_client_test, an_operation_path_with_dot_segments_is_refused_in_every_spelling) {
    for (std::string path : {"/a/../b", "/a/./b", "/..", "/.", "/a/..", "/a/.", "/a/%2e%2e/b", "/a/%2E%2e/b", "/a/.%2e/b",
                             "/a/%2e./b", "/a/%2e/b", "/a/..%2fb", "/a/..%2Fb", "/a/..%5cb", "/a/..%5Cb", "/a/..\\b",
                             "/{id}/../admin", "/./{id}", "/a/..?x=1"}) {
        auto spec = sms_client_spec();
        spec.operations[0].path = path;
        auto r = external_api_client::register_new(tenant_ctx(), clock.now(), provider, spec);
        EXPECT_ERRC(r, errc::invalid_argument);
        if (!r) {
            EXPECT_NE(r.error().detail().find("path"), std::string::npos) << r.error().detail();
        }
    }
    for (std::string path : {"/.well-known/{id}", "/a/.../b", "/a/..b/c", "/a/b..", "/v1/{id}.json", "/a?next=../b"}) {
        auto spec = sms_client_spec();
        spec.operations[0].path = path;
        EXPECT_TRUE(external_api_client::register_new(tenant_ctx(), clock.now(), provider, spec)) << path;
    }
}

// A template a run could never fill is refused when the client is registered (every run failed
// with "input.pathParams.id is required", whatever the input).
TEST_F(api_client_test, an_operation_path_with_an_unbalanced_or_empty_parameter_is_refused) {
    for (std::string path : {"/items/{id", "/items/id}", "/items/{}", "/items/{a{b}}", "/items/{id}}/x", "/a/{x}/{"}) {
        auto spec = sms_client_spec();
        spec.operations[0].path = path;
        auto r = external_api_client::register_new(tenant_ctx(), clock.now(), provider, spec);
        ASSERT_FALSE(r) << path;
        EXPECT_EQ(r.error(), errc::invalid_argument) << path;
        EXPECT_NE(r.error().detail().find("{name}"), std::string::npos) << r.error().detail();
    }
    for (std::string path : {"/items/{id}", "/a/{x}/b/{y}", "/search?q={q}", "/v1/{id}.json"}) {
        auto spec = sms_client_spec();
        spec.operations[0].path = path;
        EXPECT_TRUE(external_api_client::register_new(tenant_ctx(), clock.now(), provider, spec)) << path;
    }
}

// A request line cannot carry control characters or spaces: such a path could never be called.
TEST_F(api_client_test, operation_paths_with_control_characters_or_spaces_are_refused) {
    for (auto const& path : std::vector<std::string>{"/v1/messages\r\nHost: evil.example", "/v1/\nmessages",
                                                     std::string("/v1/\0messages", 13), "/v1/\tmessages",
                                                     "/v1/messages\x7f", "/v1/messages HTTP/1.0", "/v1/{id} x"}) {
        auto spec = sms_client_spec();
        spec.operations[0].path = path;
        auto r = external_api_client::register_new(tenant_ctx(), clock.now(), provider, spec);
        ASSERT_FALSE(r) << path;
        EXPECT_EQ(r.error(), errc::invalid_argument) << path;
        EXPECT_NE(r.error().detail().find("operations[].path"), std::string::npos) << r.error().detail();
    }
    auto fine = sms_client_spec();
    fine.operations[0].path = "/v1/messages/{id}/sms%20text";
    EXPECT_TRUE(external_api_client::register_new(tenant_ctx(), clock.now(), provider, fine));
}

TEST_F(api_client_test, register_refuses_bad_assembly_names_and_versions) {
    for (std::string name : {"", "Acme Sms", "Acme/Sms", "Acme\\Sms"}) {
        auto spec = sms_client_spec();
        spec.assembly_name = name;
        EXPECT_ERRC(external_api_client::register_new(tenant_ctx(), clock.now(), provider, spec),
                    errc::invalid_argument);
    }
    for (std::string version : {"1.0", "v1.0.0", "01.0.0", ""}) {
        auto spec = sms_client_spec(version);
        auto r = external_api_client::register_new(tenant_ctx(), clock.now(), provider, spec);
        EXPECT_ERRC(r, errc::invalid_argument);
    }
}

TEST_F(api_client_test, a_deprecated_provider_takes_no_new_clients) {
    provider.deprecate("end of life").value();
    EXPECT_ERRC(external_api_client::register_new(tenant_ctx(), clock.now(), provider, sms_client_spec()),
                errc::invariant_violation);
}

TEST_F(api_client_test, a_client_of_a_global_provider_is_global_and_needs_an_admin) {
    auto spec = fixtures::sms_provider_spec();
    spec.scope = provider_scope::global;
    auto global = integration_provider::register_new(fixtures::admin_ctx(), clock.now(), spec).value();
    EXPECT_ERRC(external_api_client::register_new(tenant_ctx(), clock.now(), global, sms_client_spec()),
                errc::forbidden);
    auto c = external_api_client::register_new(fixtures::admin_ctx(), clock.now(), global, sms_client_spec()).value();
    EXPECT_EQ(c.meta().tenant_id, "");
}

TEST_F(api_client_test, find_operation_returns_the_binding_or_null) {
    auto c = registered_client();
    auto const* op = c.find_operation("sms.send");
    ASSERT_NE(op, nullptr);
    EXPECT_EQ(op->method, "POST");
    EXPECT_EQ(op->path, "/v1/messages");
    EXPECT_EQ(c.find_operation("sms.status"), nullptr);
}

// ---- transitions ----------------------------------------------------------------------------

TEST_F(api_client_test, registered_to_active_raises_no_event) {
    auto c = registered_client();
    ASSERT_TRUE(c.activate());
    EXPECT_EQ(c.status(), client_status::active);
    EXPECT_EQ(fixtures::event_types(c), std::vector<std::string>{std::string(registered_event)});
}

TEST_F(api_client_test, registered_to_deprecated_raises_deprecated) {
    auto c = registered_client();
    ASSERT_TRUE(c.deprecate());
    EXPECT_EQ(c.status(), client_status::deprecated);
    ASSERT_EQ(c.pending_events().size(), 2u);
    auto const& e = c.pending_events().back();
    EXPECT_EQ(e.event_type, deprecated_event);
    EXPECT_EQ(e.data.at("apiClientId").as_string(), c.id());
    EXPECT_EQ(e.data.at("providerId").as_string(), provider.id());
    EXPECT_EQ(e.data.at("version").as_string(), "1.0.0");
}

TEST_F(api_client_test, active_to_deprecated_raises_deprecated) {
    auto c = active_client();
    ASSERT_TRUE(c.deprecate());
    EXPECT_EQ(c.status(), client_status::deprecated);
    EXPECT_EQ(c.pending_events().back().event_type, deprecated_event);
}

TEST_F(api_client_test, active_cannot_be_activated_again) {
    auto c = active_client();
    auto before = snap(c);
    EXPECT_ERRC(c.activate(), errc::invalid_state);
    EXPECT_UNCHANGED(c, before);
}

TEST_F(api_client_test, deprecated_cannot_be_activated) {
    auto c = deprecated_client();
    auto before = snap(c);
    EXPECT_ERRC(c.activate(), errc::invalid_state);
    EXPECT_EQ(c.status(), client_status::deprecated);
    EXPECT_UNCHANGED(c, before);
}

TEST_F(api_client_test, deprecated_cannot_be_deprecated_again) {
    auto c = deprecated_client();
    auto before = snap(c);
    EXPECT_ERRC(c.deprecate(), errc::invalid_state);
    EXPECT_UNCHANGED(c, before);
}

// ---- ClientVersion history ------------------------------------------------------------------

TEST_F(api_client_test, publishing_a_greater_version_moves_the_client_and_keeps_history) {
    auto c = active_client();
    clock.advance(std::chrono::hours{24});
    ASSERT_TRUE(c.publish_version("1.1.0-beta.1", clock.now()));
    ASSERT_TRUE(c.publish_version("1.1.0", clock.now()));
    EXPECT_EQ(c.data().version, "1.1.0");
    ASSERT_EQ(c.data().versions.size(), 3u);
    EXPECT_EQ(c.data().versions[1].version, "1.1.0-beta.1");
    EXPECT_EQ(c.data().versions[2].version, "1.1.0");
    EXPECT_EQ(c.data().versions[2].registered_at, clock.now());
    EXPECT_EQ(c.status(), client_status::active);
}

TEST_F(api_client_test, publishing_an_equal_or_older_version_is_refused) {
    auto c = registered_client("1.2.0");
    auto before = snap(c);
    for (std::string v : {"1.2.0", "1.1.9", "1.2.0-rc.1", "1.2.0+build.7"}) {
        auto r = c.publish_version(v, clock.now());
        EXPECT_ERRC(r, errc::invalid_argument);
    }
    EXPECT_ERRC(c.publish_version("latest", clock.now()), errc::invalid_argument);
    EXPECT_UNCHANGED(c, before);
}

TEST_F(api_client_test, a_deprecated_client_publishes_no_versions) {
    auto c = deprecated_client();
    auto before = snap(c);
    EXPECT_ERRC(c.publish_version("2.0.0", clock.now()), errc::invalid_state);
    EXPECT_UNCHANGED(c, before);
}

TEST_F(api_client_test, restore_refuses_an_id_without_the_client_prefix) {
    auto c = registered_client();
    auto d = c.data();
    d.api_client_id = "client-not-a-ulid";
    EXPECT_ERRC(external_api_client::restore(c.meta(), d), errc::invalid_argument);
}

// ---- registry: invariants spanning the store ------------------------------------------------

class api_client_registry_test : public testing::Test {
protected:
    manual_clock clock;
    fixtures::temp_store store{clock};
    registry reg{*store, clock, net::egress_policy{}};

    integration_provider provider_for(request_context const& ctx) {
        return reg.register_provider(ctx, fixtures::sms_provider_spec()).value();
    }
    integration_provider find_provider(request_context const& ctx, std::string const& id) {
        std::optional<integration_provider> out;
        store->read(ctx, [&](storage::unit_of_work& uow) -> result<void> {
                 auto p = uow.providers().find(id);
                 if (!p) return p.error();
                 out = std::move(*p);
                 return {};
             }).value();
        return std::move(*out);
    }
};

TEST_F(api_client_registry_test, assembly_name_and_version_are_unique_within_a_tenant_not_across_tenants) {
    auto t1 = tenant_ctx("t1");
    auto t2 = tenant_ctx("t2");
    auto p1 = provider_for(t1);
    auto p2 = provider_for(t2);
    ASSERT_TRUE(reg.register_client(t1, p1.id(), sms_client_spec("1.0.0")));
    EXPECT_TRUE(reg.register_client(t2, p2.id(), sms_client_spec("1.0.0")));
    auto r = reg.register_client(t1, p1.id(), sms_client_spec("1.0.0"));
    EXPECT_ERRC(r, errc::already_exists);
    EXPECT_NE(r.error().detail().find("Acme.Sms.ApiClient"), std::string::npos) << r.error().detail();
    EXPECT_TRUE(reg.register_client(t1, p1.id(), sms_client_spec("1.0.1")));
}

TEST_F(api_client_registry_test, a_published_version_cannot_take_another_clients_assembly_version) {
    auto ctx = tenant_ctx();
    auto p = provider_for(ctx);
    auto a = reg.register_client(ctx, p.id(), sms_client_spec("1.0.0")).value();
    ASSERT_TRUE(reg.register_client(ctx, p.id(), sms_client_spec("1.1.0")));
    auto r = store->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
        auto c = uow.api_clients().find(a.id());
        if (!c) return c.error();
        if (auto v = c->publish_version("1.1.0", clock.now()); !v) return v;
        return uow.api_clients().save(*c);
    });
    EXPECT_ERRC(r, errc::already_exists);
}

TEST_F(api_client_registry_test, deprecating_the_last_active_client_deprecates_the_provider) {
    auto ctx = tenant_ctx();
    auto p = provider_for(ctx);
    auto a = reg.register_client(ctx, p.id(), sms_client_spec("1.0.0")).value();
    auto b = reg.register_client(ctx, p.id(), sms_client_spec("2.0.0")).value();
    ASSERT_TRUE(reg.activate_client(ctx, a.id()));
    ASSERT_TRUE(reg.activate_client(ctx, b.id()));
    ASSERT_TRUE(reg.activate_provider(ctx, p.id()));

    ASSERT_TRUE(reg.deprecate_client(ctx, a.id()));
    EXPECT_EQ(find_provider(ctx, p.id()).status(), provider_status::active) << "client b is still Active";

    auto last = reg.deprecate_client(ctx, b.id());
    ASSERT_TRUE(last) << last.error().message();
    EXPECT_EQ(last->status(), client_status::deprecated);
    EXPECT_EQ(find_provider(ctx, p.id()).status(), provider_status::deprecated);

    auto events = store->pending_events(100).value();
    auto deprecated = std::count_if(events.begin(), events.end(), [&](auto const& rec) {
        return rec.envelope.event_type == events::event_type::provider_deprecated &&
               rec.envelope.aggregate_id == p.id();
    });
    EXPECT_EQ(deprecated, 1);
}

TEST_F(api_client_registry_test, deprecating_a_registered_client_leaves_the_active_provider_alone) {
    auto ctx = tenant_ctx();
    auto p = provider_for(ctx);
    auto active = reg.register_client(ctx, p.id(), sms_client_spec("1.0.0")).value();
    auto spare = reg.register_client(ctx, p.id(), sms_client_spec("1.1.0")).value();
    ASSERT_TRUE(reg.activate_client(ctx, active.id()));
    ASSERT_TRUE(reg.activate_provider(ctx, p.id()));
    ASSERT_TRUE(reg.deprecate_client(ctx, spare.id()));
    EXPECT_EQ(find_provider(ctx, p.id()).status(), provider_status::active);
}

TEST_F(api_client_registry_test, clients_of_a_deprecated_provider_cannot_be_activated) {
    auto ctx = tenant_ctx();
    auto p = provider_for(ctx);
    auto c = reg.register_client(ctx, p.id(), sms_client_spec()).value();
    ASSERT_TRUE(reg.deprecate_provider(ctx, p.id(), "end of life"));
    EXPECT_ERRC(reg.activate_client(ctx, c.id()), errc::invariant_violation);
}

}  // namespace
