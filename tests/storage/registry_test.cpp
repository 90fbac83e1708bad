#include <integration/providers/registry.hpp>

#include "fixtures.hpp"

#include <integration/connections/connection_service.hpp>
#include <integration/storage/sqlite_store.hpp>

namespace integration::testing {
namespace {

using providers::client_status;
using providers::provider_status;

class registry_test : public ::testing::Test {
protected:
    temp_dir dir_;
    manual_clock clock_;
    std::unique_ptr<storage::store> store_ = must(storage::open_sqlite_store({.path = dir_.file("r.db"), .clock = &clock_}));
    providers::registry registry_{*store_, clock_};
    connections::connection_service connections_{*store_, clock_};
    request_context ctx_ = request_context::for_tenant("t1", "alice");

    providers::integration_provider reload(std::string const& id) {
        std::optional<providers::integration_provider> p;
        must(store_->read(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
            p = must(uow.providers().find(id));
            return {};
        }));
        return *p;
    }
};

TEST_F(registry_test, a_provider_becomes_active_only_with_an_active_client) {
    auto p = must(registry_.register_provider(ctx_, provider_spec()));
    auto none = registry_.activate_provider(ctx_, p.id());
    ASSERT_FALSE(none);
    EXPECT_EQ(none.error(), errc::invariant_violation);
    auto c = must(registry_.register_client(ctx_, p.id(), client_spec()));
    auto registered_only = registry_.activate_provider(ctx_, p.id());
    ASSERT_FALSE(registered_only);
    EXPECT_EQ(registered_only.error(), errc::invariant_violation);
    EXPECT_EQ(reload(p.id()).status(), provider_status::registered);
    must(registry_.activate_client(ctx_, c.id()));
    EXPECT_EQ(must(registry_.activate_provider(ctx_, p.id())).status(), provider_status::active);
    EXPECT_EQ(reload(p.id()).status(), provider_status::active);
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
    auto conn = must(connections_.create(ctx_, p.id(), connection_spec()));
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

TEST_F(registry_test, key_and_assembly_uniqueness_give_clear_errors) {
    must(registry_.register_provider(ctx_, provider_spec("dup")));
    auto again = registry_.register_provider(ctx_, provider_spec("dup"));
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error(), errc::already_exists);
    EXPECT_NE(again.error().detail().find("dup"), std::string::npos);
    auto p = must(registry_.register_provider(ctx_, provider_spec("other")));
    must(registry_.register_client(ctx_, p.id(), client_spec("X.Client", "1.2.3")));
    auto other = request_context::for_tenant("t2", "bob");
    auto p2 = must(registry_.register_provider(other, provider_spec("other")));
    auto clash = registry_.register_client(other, p2.id(), client_spec("X.Client", "1.2.3"));
    ASSERT_FALSE(clash);
    EXPECT_EQ(clash.error(), errc::already_exists);
    EXPECT_NE(clash.error().detail().find("X.Client"), std::string::npos);
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
    auto conn = must(connections_.create(other, p.id(), connection_spec()));
    EXPECT_EQ(conn.meta().tenant_id, "t2");
    auto client_by_tenant = registry_.register_client(other, p.id(), client_spec("Sneaky.Client"));
    ASSERT_FALSE(client_by_tenant);
    EXPECT_EQ(client_by_tenant.error(), errc::forbidden);
}

}  // namespace
}  // namespace integration::testing
