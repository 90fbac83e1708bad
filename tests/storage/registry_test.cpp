#include <integration/services/registry.hpp>

#include "fixtures.hpp"

#include <integration/services/connection_service.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>

namespace integration::testing {
namespace {

using providers::client_status;
using providers::provider_status;

class registry_test : public ::testing::Test {
protected:
    temp_dir dir_;
    manual_clock clock_;
    std::unique_ptr<storage::store> store_ = must(storage::open_sqlite_store({.path = dir_.file("r.db"), .clock = &clock_}));
    providers::registry registry_{*store_, clock_, net::egress_policy{}};
    connections::connection_service connections_{*store_, clock_, net::egress_policy{}};
    request_context ctx_ = request_context::for_tenant("t1", "alice");

    /** `connection_spec()` naming a credential of provider `provider_id`, saved in `ctx`'s tenant. */
    connections::connection_spec spec_for(std::string const& provider_id, request_context const& ctx) {
        auto c = must(credentials::integration_credential::create(ctx, clock_.now(), credential_spec(provider_id)));
        must(store_->transact(ctx, [&](storage::unit_of_work& uow) { return uow.credentials().save(c); }));
        auto spec = connection_spec();
        spec.credential_id = c.id();
        return spec;
    }

    providers::integration_provider reload(std::string const& id) {
        std::optional<providers::integration_provider> p;
        must(store_->read(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
            p = must(uow.providers().find(id));
            return {};
        }));
        return *p;
    }
};

// A provider is activated with its Registered clients, in one commit; one without a client is
// refused. Activated again, it activates the clients registered since; a Deprecated one is
// refused and its clients stay as they are.
TEST_F(registry_test, a_provider_is_activated_with_its_registered_clients_in_one_commit) {
    auto client_status_of = [&](std::string const& id) {
        return must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.api_clients().find(id); })).status();
    };
    auto p = must(registry_.register_provider(ctx_, provider_spec()));
    auto none = registry_.activate_provider(ctx_, p.id());
    ASSERT_FALSE(none);
    EXPECT_EQ(none.error(), errc::invariant_violation);
    auto c = must(registry_.register_client(ctx_, p.id(), client_spec()));
    EXPECT_EQ(must(registry_.activate_provider(ctx_, p.id())).status(), provider_status::active);
    EXPECT_EQ(reload(p.id()).status(), provider_status::active);
    EXPECT_EQ(client_status_of(c.id()), client_status::active);
    auto later = must(registry_.register_client(ctx_, p.id(), client_spec("Later.Client")));
    EXPECT_EQ(must(registry_.activate_provider(ctx_, p.id())).status(), provider_status::active);
    EXPECT_EQ(client_status_of(later.id()), client_status::active) << "a client registered since stays Registered";

    auto q = must(registry_.register_provider(ctx_, provider_spec("other")));
    auto waiting = must(registry_.register_client(ctx_, q.id(), client_spec("Other.Client")));
    must(registry_.deprecate_provider(ctx_, q.id(), "gone"));
    auto refused = registry_.activate_provider(ctx_, q.id());
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error(), errc::invalid_state);
    EXPECT_EQ(client_status_of(waiting.id()), client_status::registered) << "a refused activation changed a client";
}

TEST_F(registry_test, an_operations_idempotency_header_must_be_one_a_request_may_carry) {
    auto p = must(registry_.register_provider(ctx_, provider_spec()));
    for (std::string const bad : {"Content-Length", "Host", "Proxy-Authorization", "Idempotency Key", "Key\r\nX-Evil", ""}) {
        auto spec = client_spec();
        spec.operations[0].idempotency_header = bad;
        auto r = registry_.register_client(ctx_, p.id(), spec);
        ASSERT_FALSE(r) << bad;
        EXPECT_EQ(r.error(), errc::invalid_argument) << bad;
        EXPECT_NE(r.error().detail().find("idempotencyHeader"), std::string::npos) << r.error().detail();
    }
    auto spec = client_spec();
    spec.operations[0].idempotency_header = "Idempotency-Key";
    auto c = must(registry_.register_client(ctx_, p.id(), spec));
    EXPECT_EQ(c.data().operations[0].idempotency_header, std::optional<std::string>("Idempotency-Key"));
}

TEST_F(registry_test, deprecating_the_last_active_client_deprecates_the_provider) {
    auto p = must(registry_.register_provider(ctx_, provider_spec()));
    auto c1 = must(registry_.register_client(ctx_, p.id(), client_spec("A.Client", "1.0.0")));
    auto c2 = must(registry_.register_client(ctx_, p.id(), client_spec("B.Client", "1.0.0")));
    must(registry_.activate_client(ctx_, c1.id()));
    must(registry_.activate_client(ctx_, c2.id()));
    must(registry_.activate_provider(ctx_, p.id()));
    EXPECT_EQ(must(registry_.deprecate_client(ctx_, c1.id())).status(), client_status::deprecated);
    EXPECT_EQ(reload(p.id()).status(), provider_status::active);
    must(registry_.deprecate_client(ctx_, c2.id()));
    EXPECT_EQ(reload(p.id()).status(), provider_status::deprecated);
    auto events = must(store_->pending_events(100));
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back().envelope.event_type, "IntegrationProviderDeprecated");
    EXPECT_EQ(events[events.size() - 2].envelope.event_type, "ExternalApiClientDeprecated");
}

TEST_F(registry_test, a_connection_needs_an_active_provider) {
    auto p = must(registry_.register_provider(ctx_, provider_spec()));
    auto pending = connections_.create(ctx_, p.id(), connection_spec());
    ASSERT_FALSE(pending);
    EXPECT_EQ(pending.error(), errc::invariant_violation);
    auto c = must(registry_.register_client(ctx_, p.id(), client_spec()));
    must(registry_.activate_client(ctx_, c.id()));
    must(registry_.activate_provider(ctx_, p.id()));
    auto conn = must(connections_.create(ctx_, p.id(), spec_for(p.id(), ctx_)));
    EXPECT_EQ(conn.status(), connections::connection_status::pending);
    must(registry_.deprecate_provider(ctx_, p.id(), "vendor sunset"));
    auto after = connections_.create(ctx_, p.id(), connection_spec());
    ASSERT_FALSE(after);
    EXPECT_EQ(after.error(), errc::invariant_violation);
    auto unknown = connections_.create(ctx_, "prov-01JD3Q8V6X4T2M9R5B7N1K0FZC", connection_spec());
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error(), errc::not_found);
}

TEST_F(registry_test, a_connection_naming_an_unknown_credential_is_refused) {
    auto p = must(registry_.register_provider(ctx_, provider_spec()));
    must(registry_.activate_client(ctx_, must(registry_.register_client(ctx_, p.id(), client_spec())).id()));
    must(registry_.activate_provider(ctx_, p.id()));
    auto spec = connection_spec();
    spec.credential_id = "cred-01JD3Q8V6X4T2M9R5B7N1K0FZC";
    auto r = connections_.create(ctx_, p.id(), spec);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::not_found);
}

// A credential goes only to its own provider's vendor: a connection of another provider, a
// credential bound to another connection and a revoked one are refused, naming why.
TEST_F(registry_test, a_connection_may_use_only_a_live_credential_of_its_own_provider) {
    auto active = [&](std::string key) {
        auto p = must(registry_.register_provider(ctx_, provider_spec(key)));
        must(registry_.activate_client(ctx_, must(registry_.register_client(ctx_, p.id(), client_spec("C." + key))).id()));
        return must(registry_.activate_provider(ctx_, p.id()));
    };
    auto mine = active("mine"), other = active("other");
    auto save = [&](std::string const& provider_id, std::optional<std::string> connection_id, bool revoked) {
        auto spec = credential_spec(provider_id);
        spec.connection_id = std::move(connection_id);
        auto c = must(credentials::integration_credential::create(ctx_, clock_.now(), spec));
        if (revoked) must(c.revoke("leaked", clock_.now()));
        must(store_->transact(ctx_, [&](storage::unit_of_work& uow) { return uow.credentials().save(c); }));
        return c.id();
    };
    auto with = [&](std::string const& credential_id) {
        auto spec = connection_spec();
        spec.credential_id = credential_id;
        return connections_.create(ctx_, mine.id(), spec);
    };
    auto foreign = with(save(other.id(), std::nullopt, false));
    ASSERT_FALSE(foreign);
    EXPECT_EQ(foreign.error(), errc::invalid_argument);
    EXPECT_NE(foreign.error().detail().find("belongs to provider " + other.id()), std::string::npos) << foreign.error().detail();
    auto bound = with(save(mine.id(), "conn-01JD3Q8V6X4T2M9R5B7N1K0FZC", false));
    ASSERT_FALSE(bound);
    EXPECT_NE(bound.error().detail().find("belongs to connection conn-01JD3Q8V6X4T2M9R5B7N1K0FZC"), std::string::npos);
    auto revoked = with(save(mine.id(), std::nullopt, true));
    ASSERT_FALSE(revoked);
    EXPECT_EQ(revoked.error(), errc::invalid_state);
    must(with(save(mine.id(), std::nullopt, false)));
}

TEST_F(registry_test, key_and_assembly_uniqueness_give_clear_errors) {
    must(registry_.register_provider(ctx_, provider_spec("dup")));
    auto again = registry_.register_provider(ctx_, provider_spec("dup"));
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error(), errc::already_exists);
    EXPECT_NE(again.error().detail().find("dup"), std::string::npos);
    auto p = must(registry_.register_provider(ctx_, provider_spec("other")));
    must(registry_.register_client(ctx_, p.id(), client_spec("X.Client", "1.2.3")));
    auto clash = registry_.register_client(ctx_, p.id(), client_spec("X.Client", "1.2.3"));
    ASSERT_FALSE(clash);
    EXPECT_EQ(clash.error(), errc::already_exists);
    EXPECT_NE(clash.error().detail().find("X.Client"), std::string::npos);
    EXPECT_NE(clash.error().detail().find("1.2.3"), std::string::npos);
    // Another tenant's view does not hold tenant t1's client.
    auto other = request_context::for_tenant("t2", "bob");
    auto p2 = must(registry_.register_provider(other, provider_spec("other")));
    EXPECT_TRUE(registry_.register_client(other, p2.id(), client_spec("X.Client", "1.2.3")));
}

// The registry and the connection service refuse, with the field named, destinations their egress
// policy refuses without resolving them; an allow-listed literal address passes.
TEST_F(registry_test, destinations_the_egress_policy_refuses_are_refused_when_registered) {
    net::egress_policy loopback_allowed{.allow = {must(net::cidr::parse("127.0.0.0/8"))}};
    providers::registry registry(*store_, clock_, loopback_allowed);
    connections::connection_service connections(*store_, clock_, loopback_allowed);
    auto expect_denied = [](auto const& r, std::string const& field) {
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error(), errc::egress_denied) << r.error().detail();
        EXPECT_EQ(r.error().detail().rfind(field + ": ", 0), 0u) << r.error().detail();
    };
    auto spec = provider_spec("meta");
    spec.base_url = "http://0251.254.169.254";
    expect_denied(registry.register_provider(ctx_, spec), "baseUrl");
    spec.base_url = "https://api.acme.example";
    spec.environments = {{"internal", "https://10.1.2.3"}};
    expect_denied(registry.register_provider(ctx_, spec), "environments[].baseUrl");
    spec.environments = {{"local", "http://127.0.0.1:8080"}};
    auto p = must(registry.register_provider(ctx_, spec));
    must(registry.activate_client(ctx_, must(registry.register_client(ctx_, p.id(), client_spec())).id()));
    must(registry.activate_provider(ctx_, p.id()));

    auto endpoint = spec_for(p.id(), ctx_);
    endpoint.endpoints = {{"upload", "https://[::ffff:192.168.0.1]", std::nullopt}};
    expect_denied(connections.create(ctx_, p.id(), endpoint), "endpoints[].baseUrl");
    endpoint.endpoints = {{"default", "http://127.0.0.1:9000", std::nullopt}};
    EXPECT_TRUE(connections.create(ctx_, p.id(), endpoint));

    // A provider stored before these checks (or under a wider policy) takes no clients or connections.
    std::string stored;
    must(store_->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        auto old = provider_spec("stored");
        old.base_url = "https://169.254.169.254";
        auto r = must(providers::integration_provider::register_new(ctx_, clock_.now(), old));
        must(r.activate(1));
        stored = r.id();
        return uow.providers().save(r);
    }));
    expect_denied(registry.register_client(ctx_, stored, client_spec("Stored.Client")), "the provider's baseUrl");
    auto plain = connection_spec();
    plain.endpoints.clear();
    expect_denied(connections.create(ctx_, stored, plain), "the provider's baseUrl");
    std::size_t stored_connections = 0;
    must(store_->read(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        stored_connections = must(uow.connections().list({.provider_id = stored}, {})).items.size();
        return {};
    }));
    EXPECT_EQ(stored_connections, 0u);
}

TEST_F(registry_test, clients_of_a_deprecated_provider_cannot_be_added_or_activated) {
    auto p = must(registry_.register_provider(ctx_, provider_spec()));
    auto c = must(registry_.register_client(ctx_, p.id(), client_spec()));
    must(registry_.deprecate_provider(ctx_, p.id(), "gone"));
    auto add = registry_.register_client(ctx_, p.id(), client_spec("Late.Client"));
    ASSERT_FALSE(add);
    EXPECT_EQ(add.error(), errc::invariant_violation);
    auto act = registry_.activate_client(ctx_, c.id());
    ASSERT_FALSE(act);
    EXPECT_EQ(act.error(), errc::invariant_violation);
}

// A base URL is a prefix of every operation's path: a query or a fragment would swallow the
// path (and any credential put in the query), and a dot segment would climb out of it; a health
// check's path is held to the same as an operation's.
TEST_F(registry_test, a_base_url_with_a_query_fragment_or_dot_segment_and_a_climbing_health_path_are_refused) {
    for (std::string const url : {"https://api.example.com/v1#", "https://api.example.com/v1?x=1", "https://api.example.com/v1/../admin",
                                  "https://api.example.com/%2e%2e/admin"}) {
        auto spec = provider_spec("bad-url");
        spec.base_url = url;
        auto r = registry_.register_provider(ctx_, spec);
        ASSERT_FALSE(r) << url;
        EXPECT_EQ(r.error(), errc::invalid_argument) << url;
        auto env = provider_spec("bad-env");
        env.environments = {{"sandbox", url}};
        EXPECT_FALSE(registry_.register_provider(ctx_, env)) << url;
    }
    auto spec = provider_spec("bad-health");
    spec.health_check = providers::health_check{.method = "POST", .path = "/../../admin"};
    auto r = registry_.register_provider(ctx_, spec);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().detail().find("healthCheck.path"), std::string::npos) << r.error().detail();
    must(registry_.register_provider(ctx_, provider_spec("fine")));
}

TEST_F(registry_test, global_providers_need_an_admin_and_are_visible_to_every_tenant) {
    auto spec = provider_spec("github");
    spec.scope = providers::provider_scope::global;
    auto denied = registry_.register_provider(ctx_, spec);
    ASSERT_FALSE(denied);
    EXPECT_EQ(denied.error(), errc::forbidden);
    auto admin = ctx_;
    admin.admin = true;
    auto p = must(registry_.register_provider(admin, spec));
    must(registry_.activate_client(admin, must(registry_.register_client(admin, p.id(), client_spec("Gh.Client"))).id()));
    must(registry_.activate_provider(admin, p.id()));
    auto other = request_context::for_tenant("t2", "bob");
    auto conn = must(connections_.create(other, p.id(), spec_for(p.id(), other)));
    EXPECT_EQ(conn.meta().tenant_id, "t2");
    auto client_by_tenant = registry_.register_client(other, p.id(), client_spec("Sneaky.Client"));
    ASSERT_FALSE(client_by_tenant);
    EXPECT_EQ(client_by_tenant.error(), errc::forbidden);
    // Activating or deprecating it is an admin's too, whatever its state: an Active one was "200"
    // to a tenant (nothing to write), and one with no client answered 409, a thing it cannot fix.
    auto again = registry_.activate_provider(other, p.id());
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error(), errc::forbidden);
    auto bare_spec = provider_spec("bare-global");
    bare_spec.scope = providers::provider_scope::global;
    auto bare = must(registry_.register_provider(admin, bare_spec));
    EXPECT_EQ(registry_.activate_provider(other, bare.id()).error(), errc::forbidden);
    EXPECT_EQ(registry_.deprecate_provider(other, p.id(), "mine now").error(), errc::forbidden);
}

}  // namespace
}  // namespace integration::testing
