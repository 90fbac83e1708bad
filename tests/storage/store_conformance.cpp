#include "store_conformance.hpp"

#include <integration/core/id.hpp>
#include <integration/services/outbox_relay.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>
#include <thread>

namespace integration::testing {
namespace {

using namespace std::chrono_literals;
using storage::unit_of_work;

std::string json_of(auto const& aggregate) { return boost::json::serialize(aggregate_to_json(aggregate)); }

/** Saves a provider, an Active client and an Active connection for `ctx`; returns their ids. */
struct graph {
    std::string provider_id, client_id, connection_id, credential_id;
};

graph seed_graph(storage::store& s, request_context const& ctx, time_point now, std::string key = "acme",
                 std::string assembly = "Acme.Sms.ApiClient") {
    graph g;
    must(s.transact(ctx, [&](unit_of_work& uow) -> result<void> {
        auto p = active_provider(ctx, now, key);
        auto c = must(providers::external_api_client::register_new(ctx, now, p, client_spec(assembly)));
        must(c.activate());
        auto cred = must(credentials::integration_credential::create(ctx, now, credential_spec(p.id())));
        auto spec = connection_spec();
        spec.credential_id = cred.id();
        auto conn = must(connections::integration_connection::create(ctx, now, p, spec));
        must(conn.record_health({health_status::healthy, "ok"}, now));
        must(conn.activate(true, now));
        if (auto r = uow.providers().save(p); !r) return r;
        if (auto r = uow.api_clients().save(c); !r) return r;
        if (auto r = uow.credentials().save(cred); !r) return r;
        if (auto r = uow.connections().save(conn); !r) return r;
        g = {p.id(), c.id(), conn.id(), cred.id()};
        return {};
    }));
    return g;
}

TEST_P(store_conformance, every_aggregate_round_trips_with_children_and_metadata) {
    auto now = clock_.now();
    auto g = seed_graph(*store_, a_, now);
    std::string run_json, failure_json, sub_json, out_json, in_json;
    std::string run_id, failure_id, sub_id, out_id, in_id;
    write(a_, [&](unit_of_work& uow) -> result<void> {
        auto conn = must(uow.connections().find(g.connection_id));
        auto run = must(runs::integration_run::create(a_, now, conn, "sms.send", std::string("idem-1")));
        must(run.start(conn, false, now));
        must(run.set_request_ref("blob://tenant-a/runs/req"));
        must(run.record_attempt({1, runs::attempt_status::failed, failures::failure_category::transient, 503, 12, now}));
        must(run.record_attempt({2, runs::attempt_status::succeeded, std::nullopt, 201, 30, now}));
        must(run.complete(now + 50ms, std::string("SM123"), std::string("blob://tenant-a/runs/resp")));
        auto f = must(failures::integration_failure::record(
            a_, now, failures::failure_source::run, run.id(), g.provider_id,
            {failures::failure_category::rate_limited, "http_429", "slow down", failures::next_action::retry, now + 5s}));
        must(f.record_attempt({failures::failure_category::transient, "http_503", "unavailable", failures::next_action::retry, now + 10s}, now));
        must(f.escalate({"ops", "vendor outage", now, std::string("INC-1")}));
        auto sub = must(webhooks::webhook_subscription::create(
            a_, now,
            {"proj-1", "order.*", "https://hooks.example.com/in", "vault://local/tenant-a/whsec?version=1",
             boost::json::value{{"exists", {{"path", "$.amount"}}}}, webhooks::subscription_attempt_policy{.max_attempts = 3}}));
        auto out = must(webhooks::webhook_delivery::outbound(a_, now, sub, "order.created", "evt-1", std::string("blob://p")));
        must(out.record_failure({0, 500, 40, std::string("oops"), std::nullopt, now}, now + 5s));
        auto in = must(webhooks::webhook_delivery::inbound(a_, now, g.connection_id, g.provider_id, "gh-1", "push",
                                                          std::string("blob://in"), std::string("abc")));
        must(in.accept({true, true}, now));
        if (auto r = uow.runs().save(run); !r) return r;
        if (auto r = uow.failures().save(f); !r) return r;
        if (auto r = uow.subscriptions().save(sub); !r) return r;
        if (auto r = uow.deliveries().save(out); !r) return r;
        if (auto r = uow.deliveries().save(in); !r) return r;
        run_json = json_of(run), failure_json = json_of(f), sub_json = json_of(sub), out_json = json_of(out),
        in_json = json_of(in);
        run_id = run.id(), failure_id = f.id(), sub_id = sub.id(), out_id = out.id(), in_id = in.id();
        return {};
    });
    read(a_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_EQ(json_of(must(uow.runs().find(run_id))), run_json);
        EXPECT_EQ(json_of(must(uow.failures().find(failure_id))), failure_json);
        EXPECT_EQ(json_of(must(uow.subscriptions().find(sub_id))), sub_json);
        EXPECT_EQ(json_of(must(uow.deliveries().find(out_id))), out_json);
        EXPECT_EQ(json_of(must(uow.deliveries().find(in_id))), in_json);
        auto p = must(uow.providers().find(g.provider_id));
        EXPECT_EQ(p.data().capabilities, (std::vector<std::string>{"sms.send", "sms.status"}));
        EXPECT_EQ(p.data().environments.at(0).base_url, "https://sandbox.acme.example");
        EXPECT_EQ(p.meta().tenant_id, "tenant-a");
        EXPECT_EQ(p.meta().created_by, "alice");
        EXPECT_EQ(p.meta().version, 1);
        auto c = must(uow.api_clients().find(g.client_id));
        EXPECT_EQ(c.data().operations.at(0).path, "/v1/accounts/{account}/messages");
        EXPECT_EQ(c.data().versions.size(), 1u);
        auto conn = must(uow.connections().find(g.connection_id));
        EXPECT_EQ(conn.status(), connections::connection_status::active);
        EXPECT_EQ(conn.data().configuration.at("account").as_string(), "AC123");
        EXPECT_EQ(conn.data().endpoints.at(0).region.value(), "eu-west");
        EXPECT_EQ(conn.data().retry_policy->max_attempts, 4);
        auto cred = must(uow.credentials().find(g.credential_id));
        EXPECT_EQ(cred.data().versions.size(), 1u);
        EXPECT_EQ(cred.active_version()->fingerprint, fingerprint());
        auto run = must(uow.runs().find(run_id));
        EXPECT_EQ(run.data().run_attempts.size(), 2u);
        EXPECT_EQ(run.data().latency_ms, 50);
        return {};
    });
}

TEST_P(store_conformance, stale_version_is_a_conflict_and_writes_nothing) {
    auto g = seed_graph(*store_, a_, clock_.now());
    std::optional<connections::integration_connection> first, second;
    read(a_, [&](unit_of_work& uow) -> result<void> {
        first = must(uow.connections().find(g.connection_id));
        second = must(uow.connections().find(g.connection_id));
        return {};
    });
    write(a_, [&](unit_of_work& uow) -> result<void> {
        must(first->record_health({health_status::unhealthy, "down"}, clock_.now()));
        return uow.connections().save(*first);
    });
    EXPECT_EQ(first->meta().version, 2);
    auto r = store_->transact(a_, [&](unit_of_work& uow) -> result<void> {
        must(second->retire("stale writer"));
        return uow.connections().save(*second);
    });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::conflict);
    read(a_, [&](unit_of_work& uow) -> result<void> {
        auto c = must(uow.connections().find(g.connection_id));
        EXPECT_EQ(c.status(), connections::connection_status::degraded);
        EXPECT_EQ(c.meta().version, 2);
        return {};
    });
    auto pending = must(store_->pending_events(100));
    for (auto const& e : pending) EXPECT_NE(e.envelope.event_type, "IntegrationConnectionRetired");
}

TEST_P(store_conformance, an_error_mid_transaction_leaves_neither_row_nor_event) {
    auto before = must(store_->pending_events(1000)).size();
    std::string id;
    auto r = store_->transact(a_, [&](unit_of_work& uow) -> result<void> {
        auto p = must(providers::integration_provider::register_new(a_, clock_.now(), provider_spec("rolled-back")));
        id = p.id();
        if (auto s = uow.providers().save(p); !s) return s;
        return error{errc::invalid_argument, "caller gave up after the save"};
    });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::invalid_argument);
    EXPECT_EQ(must(store_->pending_events(1000)).size(), before);
    auto found = store_->read(a_, [&](unit_of_work& uow) -> result<void> {
        auto p = uow.providers().find(id);
        EXPECT_FALSE(p);
        if (!p) {
            EXPECT_EQ(p.error(), errc::not_found);
        }
        return {};
    });
    must(found);
}

TEST_P(store_conformance, a_throwing_unit_of_work_rolls_back_and_rethrows) {
    std::string id;
    EXPECT_THROW((void)store_->transact(a_,
                                        [&](unit_of_work& uow) -> result<void> {
                                            auto p = must(providers::integration_provider::register_new(
                                                a_, clock_.now(), provider_spec("thrower")));
                                            id = p.id();
                                            must(uow.providers().save(p));
                                            throw std::runtime_error("boom");
                                        }),
                 std::runtime_error);
    read(a_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_FALSE(uow.providers().find(id));
        return {};
    });
}

TEST_P(store_conformance, a_unique_violation_rolls_back_earlier_saves_of_the_same_unit) {
    seed_graph(*store_, a_, clock_.now(), "dup");
    std::string first_id;
    auto r = store_->transact(a_, [&](unit_of_work& uow) -> result<void> {
        auto ok = must(providers::integration_provider::register_new(a_, clock_.now(), provider_spec("fresh")));
        first_id = ok.id();
        if (auto s = uow.providers().save(ok); !s) return s;
        auto dup = must(providers::integration_provider::register_new(a_, clock_.now(), provider_spec("dup")));
        return uow.providers().save(dup);
    });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::already_exists);
    read(a_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_FALSE(uow.providers().find(first_id));
        return {};
    });
}

TEST_P(store_conformance, provider_key_is_unique_per_scope_and_tenant) {
    seed_graph(*store_, a_, clock_.now(), "same-key");
    // Same key in another tenant is fine.
    seed_graph(*store_, b_, clock_.now(), "same-key", "Other.Assembly");
    // A global provider with that key is a different scope.
    auto admin = a_;
    admin.admin = true;
    write(admin, [&](unit_of_work& uow) -> result<void> {
        auto spec = provider_spec("same-key");
        spec.scope = providers::provider_scope::global;
        auto p = must(providers::integration_provider::register_new(admin, clock_.now(), spec));
        return uow.providers().save(p);
    });
    auto r = store_->transact(a_, [&](unit_of_work& uow) -> result<void> {
        auto p = must(providers::integration_provider::register_new(a_, clock_.now(), provider_spec("same-key")));
        return uow.providers().save(p);
    });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::already_exists);
}

// assemblyName + version: unique among global clients and within one tenant's view (its own
// clients and the global ones); another tenant's clients neither conflict nor show in the error.
TEST_P(store_conformance, assembly_name_and_version_are_unique_within_a_tenants_view_and_among_global_clients) {
    auto a = seed_graph(*store_, a_, clock_.now(), "acme", "Shared.Assembly");
    auto admin = a_;
    admin.admin = true;
    // Saves a client of a new provider of `ctx`'s tenant (or a global one).
    int providers = 0;
    auto register_client = [&](request_context const& ctx, std::string const& assembly, std::string const& version,
                               bool global = false) {
        return store_->transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto spec = provider_spec("p" + std::to_string(++providers));
            if (global) spec.scope = providers::provider_scope::global;
            auto p = must(providers::integration_provider::register_new(ctx, clock_.now(), spec));
            if (auto s = uow.providers().save(p); !s) return s;
            auto c = must(
                providers::external_api_client::register_new(ctx, clock_.now(), p, client_spec(assembly, version)));
            return uow.api_clients().save(c);
        });
    };
    auto expect_taken = [](result<void> const& r, std::string const& by) {
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error(), errc::already_exists);
        EXPECT_NE(r.error().detail().find(by), std::string::npos) << r.error().detail();
        EXPECT_EQ(r.error().detail().find("tenant-"), std::string::npos) << r.error().detail();
        EXPECT_EQ(r.error().detail().find("client-"), std::string::npos) << r.error().detail();
    };

    // Another tenant may use the same name and version: nothing tells it tenant A has one.
    must(register_client(b_, "Shared.Assembly", "1.0.0"));
    // Within one tenant it stays unique, for every version of a client's history.
    expect_taken(register_client(a_, "Shared.Assembly", "1.0.0"), "another client of this tenant");
    expect_taken(register_client(b_, "Shared.Assembly", "1.0.0"), "another client of this tenant");
    must(register_client(a_, "Shared.Assembly", "1.1.0"));
    expect_taken(store_->transact(a_,
                                  [&](unit_of_work& uow) -> result<void> {
                                      auto c = must(uow.api_clients().find(a.client_id));
                                      must(c.publish_version("1.1.0", clock_.now()));
                                      return uow.api_clients().save(c);
                                  }),
                 "another client of this tenant");

    // Global clients: unique among themselves, and no tenant may take a global name and version.
    must(register_client(admin, "Global.Assembly", "1.0.0", true));
    expect_taken(register_client(admin, "Global.Assembly", "1.0.0", true), "a global client");
    expect_taken(register_client(a_, "Global.Assembly", "1.0.0"), "a global client");
    expect_taken(register_client(b_, "Global.Assembly", "1.0.0"), "a global client");
    must(register_client(b_, "Global.Assembly", "2.0.0"));

    // A new global client is never blocked by what tenants registered (no tenant can squat a
    // name the operator publishes); the tenants keep their clients, and take it no further.
    must(register_client(admin, "Shared.Assembly", "1.0.0", true));
    expect_taken(register_client(b_, "Shared.Assembly", "1.0.0"), "a global client");
    read(b_, [&](unit_of_work& uow) -> result<void> {
        std::size_t shared = 0;
        for (auto const& p : must(uow.providers().list({.limit = 500})).items)
            for (auto const& c : must(uow.api_clients().list_by_provider(p.id(), {})).items)
                shared += c.data().assembly_name == "Shared.Assembly";
        EXPECT_EQ(shared, 2u);  // tenant B's own and the global one; never tenant A's
        return {};
    });
}

TEST_P(store_conformance, tenant_b_cannot_read_list_or_update_tenant_a_rows) {
    auto now = clock_.now();
    auto g = seed_graph(*store_, a_, now);
    std::optional<runs::integration_run> run;
    std::optional<failures::integration_failure> fail;
    std::optional<webhooks::webhook_subscription> sub;
    std::optional<webhooks::webhook_delivery> del, in;
    write(a_, [&](unit_of_work& uow) -> result<void> {
        auto conn = must(uow.connections().find(g.connection_id));
        run = must(runs::integration_run::create(a_, now, conn, "sms.send", std::string("key-a")));
        fail = must(failures::integration_failure::record(a_, now, failures::failure_source::run, run->id(), g.provider_id,
                                                          {failures::failure_category::transient, "timeout", "t",
                                                           failures::next_action::retry, now}));
        sub = must(webhooks::webhook_subscription::create(
            a_, now, {"proj-1", "*", "https://hooks.example.com", "vault://local/tenant-a/s?version=1", {}, {}}));
        del = must(webhooks::webhook_delivery::outbound(a_, now, *sub, "x.y", "evt", std::nullopt));
        in = must(webhooks::webhook_delivery::inbound(a_, now, g.connection_id, g.provider_id, "pd-1", "push", {}, {}));
        must(uow.runs().save(*run));
        must(uow.failures().save(*fail));
        must(uow.subscriptions().save(*sub));
        must(uow.deliveries().save(*del));
        return uow.deliveries().save(*in);
    });
    auto expect_not_found = [](auto const& r) {
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error(), errc::not_found);
    };
    read(b_, [&](unit_of_work& uow) -> result<void> {
        expect_not_found(uow.providers().find(g.provider_id));
        expect_not_found(uow.providers().find_by_key("acme", providers::provider_scope::tenant));
        expect_not_found(uow.api_clients().find(g.client_id));
        expect_not_found(uow.connections().find(g.connection_id));
        expect_not_found(uow.credentials().find(g.credential_id));
        expect_not_found(uow.runs().find(run->id()));
        expect_not_found(uow.runs().find_by_idempotency_key("key-a"));
        expect_not_found(uow.failures().find(fail->id()));
        expect_not_found(uow.subscriptions().find(sub->id()));
        expect_not_found(uow.deliveries().find(del->id()));
        expect_not_found(uow.deliveries().find_inbound(g.connection_id, "pd-1"));
        EXPECT_TRUE(must(uow.providers().list({})).items.empty());
        EXPECT_TRUE(must(uow.api_clients().list_by_provider(g.provider_id, {})).items.empty());
        EXPECT_EQ(must(uow.api_clients().count_active(g.provider_id)), 0u);
        EXPECT_TRUE(must(uow.connections().list({}, {})).items.empty());
        EXPECT_TRUE(must(uow.credentials().list({}, {})).items.empty());
        EXPECT_TRUE(must(uow.credentials().expiring_before(now + 1000h, 10)).empty());
        EXPECT_TRUE(must(uow.runs().list({}, {})).items.empty());
        EXPECT_TRUE(must(uow.failures().list({}, {})).items.empty());
        EXPECT_TRUE(must(uow.failures().due_for_retry(now + 1h, 10)).empty());
        EXPECT_TRUE(must(uow.subscriptions().list({})).items.empty());
        EXPECT_TRUE(must(uow.subscriptions().active_for_event("x.y")).empty());
        EXPECT_TRUE(must(uow.deliveries().list({}, {})).items.empty());
        EXPECT_TRUE(must(uow.deliveries().due(now + 1h, 10)).empty());
        return {};
    });
    // Saving tenant A's aggregates through tenant B's unit of work changes nothing.
    auto conn_a = std::optional<connections::integration_connection>();
    read(a_, [&](unit_of_work& uow) -> result<void> {
        conn_a = must(uow.connections().find(g.connection_id));
        return {};
    });
    must(conn_a->retire("hijack"));
    auto r = store_->transact(b_, [&](unit_of_work& uow) -> result<void> { return uow.connections().save(*conn_a); });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::not_found);
    auto r2 = store_->transact(b_, [&](unit_of_work& uow) -> result<void> { return uow.runs().save(*run); });
    ASSERT_FALSE(r2);
    EXPECT_EQ(r2.error(), errc::not_found);
    read(a_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_EQ(must(uow.connections().find(g.connection_id)).status(), connections::connection_status::active);
        EXPECT_EQ(must(uow.runs().find(run->id())).meta().version, 1);
        return {};
    });
}

TEST_P(store_conformance, global_providers_are_shared_read_only) {
    auto admin = a_;
    admin.admin = true;
    std::string id;
    write(admin, [&](unit_of_work& uow) -> result<void> {
        auto spec = provider_spec("github");
        spec.scope = providers::provider_scope::global;
        auto p = must(providers::integration_provider::register_new(admin, clock_.now(), spec));
        id = p.id();
        return uow.providers().save(p);
    });
    std::optional<providers::integration_provider> seen;
    read(b_, [&](unit_of_work& uow) -> result<void> {
        seen = must(uow.providers().find(id));
        EXPECT_TRUE(seen->is_global());
        EXPECT_EQ(must(uow.providers().find_by_key("github", providers::provider_scope::global)).id(), id);
        EXPECT_EQ(must(uow.providers().list({})).items.size(), 1u);
        return {};
    });
    must(seen->deprecate("tenant b tries"));
    auto r = store_->transact(b_, [&](unit_of_work& uow) -> result<void> { return uow.providers().save(*seen); });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::forbidden);
}

TEST_P(store_conformance, keyset_pagination_walks_every_row_once_in_creation_order) {
    auto g = seed_graph(*store_, a_, clock_.now());
    std::vector<std::string> created{g.connection_id};
    for (int i = 0; i < 6; ++i) {
        clock_.advance(1ms);
        write(a_, [&](unit_of_work& uow) -> result<void> {
            auto p = must(uow.providers().find(g.provider_id));
            auto c = must(connections::integration_connection::create(a_, clock_.now(), p, connection_spec(i % 2 ? "proj-odd" : "proj-even")));
            created.push_back(c.id());
            return uow.connections().save(c);
        });
    }
    std::vector<std::string> seen;
    storage::page_request req{.limit = 3};
    int pages = 0;
    do {
        read(a_, [&](unit_of_work& uow) -> result<void> {
            auto page = must(uow.connections().list({}, req));
            for (auto const& c : page.items) seen.push_back(c.id());
            req.cursor = page.next_cursor;
            return {};
        });
        ++pages;
    } while (!req.cursor.empty());
    EXPECT_EQ(pages, 3);
    EXPECT_EQ(seen, created);
    read(a_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_EQ(must(uow.connections().list({.project_id = "proj-odd"}, {})).items.size(), 3u);
        EXPECT_EQ(must(uow.connections().list({.project_id = "proj-even", .provider_id = g.provider_id}, {})).items.size(), 3u);
        EXPECT_EQ(must(uow.connections().list({.status = connections::connection_status::active}, {})).items.size(), 1u);
        EXPECT_EQ(must(uow.connections().list({.status = connections::connection_status::pending}, {})).items.size(), 6u);
        return {};
    });
}

// A cursor that no list handed out would page from wherever it sorts ("zzz" after every id,
// "" before them): it is refused instead, so a caller's typo never reads as an empty last page.
TEST_P(store_conformance, a_cursor_that_is_not_an_id_of_the_listed_kind_is_invalid_argument) {
    auto g = seed_graph(*store_, a_, clock_.now());
    read(a_, [&](unit_of_work& uow) -> result<void> {
        for (std::string cursor : {std::string("zzz"), std::string("conn-"), g.provider_id, g.connection_id + "x"}) {
            auto page = uow.connections().list({}, {.limit = 10, .cursor = cursor});
            EXPECT_FALSE(page) << cursor;
            if (!page) {
                EXPECT_EQ(page.error(), errc::invalid_argument) << cursor;
            }
        }
        auto runs = uow.runs().list({}, {.limit = 10, .cursor = g.connection_id});
        EXPECT_FALSE(runs);
        if (!runs) {
            EXPECT_EQ(runs.error(), errc::invalid_argument);
        }
        // The id of a row of the listed kind is a cursor, whether or not it is still there.
        auto ok = uow.connections().list({}, {.limit = 10, .cursor = new_id(id_prefix::connection, clock_.now() - std::chrono::hours(1))});
        EXPECT_TRUE(ok) << (ok ? "" : ok.error().detail());
        if (ok) {
            EXPECT_EQ(ok->items.size(), 1u);
        }
        return {};
    });
}

TEST_P(store_conformance, access_patterns_answer_the_seed_queries) {
    auto now = clock_.now();
    auto g = seed_graph(*store_, a_, now);
    write(a_, [&](unit_of_work& uow) -> result<void> {
        auto conn = must(uow.connections().find(g.connection_id));
        for (int i = 0; i < 3; ++i) {
            auto run = must(runs::integration_run::create(a_, now, conn, "sms.send"));
            if (i == 0) {
                must(run.start(conn, false, now));
                must(run.record_attempt({1, runs::attempt_status::succeeded, {}, 200, 5, now}));
                must(run.complete(now, {}, {}));
            }
            must(uow.runs().save(run));
            auto f = must(failures::integration_failure::record(
                a_, now, failures::failure_source::run, run.id(), g.provider_id,
                {failures::failure_category::transient, "e", "m", failures::next_action::retry, now + std::chrono::minutes(i)}));
            must(uow.failures().save(f));
        }
        auto poison = must(failures::integration_failure::record(
            a_, now, failures::failure_source::run, "run-x", g.provider_id,
            {failures::failure_category::poison, "bad", "m", failures::next_action::dead_letter, {}}));
        must(uow.failures().save(poison));
        auto cred = must(uow.credentials().find(g.credential_id));
        (void)cred;
        auto spec = credential_spec(g.provider_id);
        spec.expires_at = now + 24h;
        auto expiring = must(credentials::integration_credential::create(a_, now, spec));
        must(uow.credentials().save(expiring));
        for (auto pattern : {"order.*", "order.created", "invoice.paid", "*"}) {
            auto s = must(webhooks::webhook_subscription::create(
                a_, now, {"proj-1", pattern, "https://hooks.example.com", "vault://local/tenant-a/s?version=1", {}, {}}));
            must(uow.subscriptions().save(s));
            auto d = must(webhooks::webhook_delivery::outbound(a_, now, s, pattern == std::string("*") ? "any.thing" : pattern == std::string("order.*") ? "order.paid" : pattern, "evt", {}));
            if (pattern == std::string("invoice.paid")) must(d.record_success({0, 200, 3, {}, {}, now}));
            must(uow.deliveries().save(d));
        }
        auto inactive = must(webhooks::webhook_subscription::create(
            a_, now, {"proj-1", "order.created", "https://hooks.example.com", "vault://local/tenant-a/s?version=1", {}, {}}));
        must(inactive.deactivate("off"));
        return uow.subscriptions().save(inactive);
    });
    read(a_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_EQ(must(uow.runs().list({.connection_id = g.connection_id}, {})).items.size(), 3u);
        EXPECT_EQ(must(uow.runs().list({.connection_id = g.connection_id, .status = runs::run_status::completed}, {})).items.size(), 1u);
        EXPECT_EQ(must(uow.runs().list({.status = runs::run_status::pending}, {})).items.size(), 2u);
        auto due = must(uow.failures().due_for_retry(now + std::chrono::seconds(61), 10));
        EXPECT_EQ(due.size(), 2u);  // minute 0 and 1; the poison one is never due
        EXPECT_LE(due[0].data().next_attempt_at, due[1].data().next_attempt_at);
        EXPECT_EQ(must(uow.failures().list({.unresolved_only = true}, {})).items.size(), 4u);
        auto expiring = must(uow.credentials().expiring_before(now + 48h, 10));
        EXPECT_EQ(expiring.size(), 1u);
        EXPECT_EQ(must(uow.credentials().list({.provider_id = g.provider_id}, {})).items.size(), 2u);
        auto subs = must(uow.subscriptions().active_for_event("order.created"));
        std::set<std::string> patterns;
        for (auto const& s : subs) patterns.insert(s.data().event_type);
        EXPECT_EQ(patterns, (std::set<std::string>{"order.*", "order.created", "*"}));
        EXPECT_EQ(subs.size(), 3u);  // the inactive order.created subscription is skipped
        auto due_deliveries = must(uow.deliveries().due(now, 10));
        EXPECT_EQ(due_deliveries.size(), 3u);  // the delivered one is not due
        EXPECT_EQ(must(uow.deliveries().list({.status = webhooks::delivery_status::delivered}, {})).items.size(), 1u);
        return {};
    });
}

TEST_P(store_conformance, inbound_delivery_is_unique_per_provider_delivery_id) {
    auto now = clock_.now();
    auto g = seed_graph(*store_, a_, now);
    write(a_, [&](unit_of_work& uow) -> result<void> {
        auto d = must(webhooks::webhook_delivery::inbound(a_, now, g.connection_id, g.provider_id, "gh-42", "push", {}, {}));
        return uow.deliveries().save(d);
    });
    auto r = store_->transact(a_, [&](unit_of_work& uow) -> result<void> {
        auto d = must(webhooks::webhook_delivery::inbound(a_, now, g.connection_id, g.provider_id, "gh-42", "push", {}, {}));
        return uow.deliveries().save(d);
    });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::already_exists);
    read(a_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_EQ(must(uow.deliveries().find_inbound(g.connection_id, "gh-42")).data().provider_delivery_id, "gh-42");
        return {};
    });
}

TEST_P(store_conformance, add_inbound_records_a_prepared_delivery_once_per_vendor_id) {
    auto now = clock_.now();
    auto g = seed_graph(*store_, a_, now);
    auto events_before = must(store_->pending_events(500)).size();
    auto prepared = [&](request_context const& ctx, std::string const& connection_id, std::string const& hash) {
        auto d = must(webhooks::webhook_delivery::inbound(ctx, now, connection_id, g.provider_id, "gh-7",
                                                          "github.push", {}, hash));
        must(d.keep_payload(storage::stored_payload_ref(ctx.tenant_id, d.id())));
        must(d.accept({.signature_valid = true, .tenant_resolved = true}, now, boost::json::object{{"n", 1}}));
        return storage::prepare_inbound(std::move(d), ctx, now, store_->event_source(), std::string("raw\0body", 8));
    };
    auto first = prepared(a_, g.connection_id, "hash-1");
    auto const id = first.delivery.id();
    write(a_, [&](unit_of_work& uow) -> result<void> {
        auto r = uow.deliveries().add_inbound(first);
        if (!r) return r.error();
        EXPECT_FALSE(*r) << "a new vendor id is recorded";
        return {};
    });
    read(a_, [&](unit_of_work& uow) -> result<void> {
        auto d = must(uow.deliveries().find(id));
        EXPECT_EQ(d.data().status, webhooks::delivery_status::accepted);
        EXPECT_EQ(d.meta().version, 1);
        EXPECT_EQ(must(uow.deliveries().payload(id)), std::string("raw\0body", 8));
        return {};
    });
    auto events = must(store_->pending_events(500));
    ASSERT_EQ(events.size(), events_before + 2);
    std::vector<std::string> types;
    for (auto i = events_before; i < events.size(); ++i) {
        auto const& e = events[i].envelope;
        types.push_back(e.event_type);
        EXPECT_EQ(e.aggregate_type, "WebhookDelivery");
        EXPECT_EQ(e.aggregate_id, id);
        EXPECT_EQ(e.aggregate_version, 1);
        EXPECT_EQ(e.tenant_id, "tenant-a");
        EXPECT_EQ(e.source, store_->event_source());
    }
    EXPECT_EQ(types, (std::vector<std::string>{"WebhookDelivered", "github.push"}));
    EXPECT_EQ(events.back().envelope.data.at("body").at("n").as_int64(), 1) << "the serialized data is what is stored";

    // The same vendor id again: the earlier delivery comes back and nothing is written.
    auto again = prepared(a_, g.connection_id, "hash-2");
    write(a_, [&](unit_of_work& uow) -> result<void> {
        auto r = uow.deliveries().add_inbound(again);
        if (!r) return r.error();
        EXPECT_TRUE(*r);
        if (*r) {
            EXPECT_EQ((*r)->delivery_id, id);
            EXPECT_EQ((*r)->payload_hash, "hash-1");
        }
        return {};
    });
    EXPECT_EQ(must(store_->pending_events(500)).size(), events_before + 2);
    read(a_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_EQ(uow.deliveries().find(again.delivery.id()).error(), errc::not_found);
        return {};
    });

    // Another tenant's delivery with the same connection and vendor id is its own; a unit of
    // another tenant cannot add tenant A's delivery, and a read-only unit adds nothing.
    auto other = prepared(b_, g.connection_id, "hash-1");
    write(b_, [&](unit_of_work& uow) -> result<void> {
        auto r = uow.deliveries().add_inbound(other);
        if (!r) return r.error();
        EXPECT_FALSE(*r) << "tenant A's delivery is not tenant B's duplicate";
        return {};
    });
    auto stray = prepared(a_, g.connection_id, "hash-3");
    EXPECT_FALSE(store_->transact(b_, [&](unit_of_work& uow) -> result<void> {
        auto r = uow.deliveries().add_inbound(stray);
        if (!r) return r.error();
        return {};
    }));
    auto ro = prepared(a_, "con-other", "hash-4");
    auto refused = store_->read(a_, [&](unit_of_work& uow) -> result<void> {
        auto r = uow.deliveries().add_inbound(ro);
        if (!r) return r.error();
        return {};
    });
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error(), errc::invalid_state);
}

// add_inbound writes its rows through its own statements: what it stores must read back, through
// the generic repository, as every column of the delivery it was given, with the metadata and
// outbox rows the generic save writes for the same delivery.
TEST_P(store_conformance, add_inbound_stores_every_column_the_generic_save_stores) {
    auto now = clock_.now();
    auto g = seed_graph(*store_, a_, now);
    auto delivery = [&](std::string const& vendor_id) {
        auto d = must(webhooks::webhook_delivery::inbound(a_, now, g.connection_id, g.provider_id, vendor_id,
                                                          "github.pull_request", {}, std::string("hash-") + vendor_id));
        must(d.keep_payload(storage::stored_payload_ref(a_.tenant_id, d.id())));
        must(d.accept({.signature_valid = true, .tenant_resolved = true}, now,
                      boost::json::object{{"action", "opened"}, {"n", 7}}));
        return d;
    };
    char const raw[] = "{\"action\":\"opened\",\0\"n\":7}";
    std::string const body(raw, sizeof raw - 1);
    auto prepared = storage::prepare_inbound(delivery("gh-fast"), a_, now, store_->event_source(), body);
    auto const fast_data = prepared.delivery.data();
    auto generic = delivery("gh-generic");
    auto const generic_data = generic.data();
    auto events_before = must(store_->pending_events(500)).size();
    write(a_, [&](unit_of_work& uow) -> result<void> {
        auto r = uow.deliveries().add_inbound(prepared);
        if (!r) return r.error();
        EXPECT_FALSE(*r);
        if (auto s = uow.deliveries().save(generic); !s) return s;
        return uow.deliveries().put_payload(generic.id(), body);
    });
    read(a_, [&](unit_of_work& uow) -> result<void> {
        auto fast = must(uow.deliveries().find(fast_data.delivery_id));
        auto slow = must(uow.deliveries().find(generic_data.delivery_id));
        EXPECT_EQ(to_json(fast.data()), to_json(fast_data)) << "every column as given";
        EXPECT_EQ(to_json(slow.data()), to_json(generic_data));
        EXPECT_EQ(fast.meta().tenant_id, "tenant-a");
        EXPECT_EQ(fast.meta().tenant_id, slow.meta().tenant_id);
        EXPECT_EQ(fast.meta().version, slow.meta().version);
        EXPECT_EQ(fast.meta().created_at, slow.meta().created_at);
        EXPECT_EQ(fast.meta().created_by, slow.meta().created_by);
        EXPECT_EQ(fast.meta().updated_at, slow.meta().updated_at);
        EXPECT_EQ(fast.meta().updated_by, slow.meta().updated_by);
        EXPECT_EQ(must(uow.deliveries().payload(fast.id())), body) << "the payload's bytes, NUL included";
        EXPECT_EQ(must(uow.deliveries().payload(slow.id())), body);
        EXPECT_EQ(must(uow.deliveries().find_inbound(g.connection_id, "gh-fast")).id(), fast.id());
        return {};
    });
    read(b_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_EQ(uow.deliveries().find(fast_data.delivery_id).error(), errc::not_found) << "tenant A's only";
        EXPECT_EQ(uow.deliveries().payload(fast_data.delivery_id).error(), errc::not_found);
        return {};
    });
    // The same outbox rows: each delivery's events, in the same order, with the same columns.
    auto events = must(store_->pending_events(500));
    ASSERT_EQ(events.size(), events_before + 4);
    for (std::size_t i = 0; i < 2; ++i) {
        auto const& f = events[events_before + i].envelope;
        auto const& s = events[events_before + 2 + i].envelope;
        EXPECT_EQ(f.aggregate_id, fast_data.delivery_id);
        EXPECT_EQ(s.aggregate_id, generic_data.delivery_id);
        EXPECT_EQ(f.event_type, s.event_type);
        EXPECT_EQ(f.aggregate_type, s.aggregate_type);
        EXPECT_EQ(f.aggregate_version, s.aggregate_version);
        EXPECT_EQ(f.tenant_id, s.tenant_id);
        EXPECT_EQ(f.source, s.source);
        EXPECT_EQ(f.occurred_at, s.occurred_at);
        if (f.event_type != "WebhookDelivered") {
            EXPECT_EQ(f.data.at("body"), s.data.at("body"));
        }
    }
}

TEST_P(store_conformance, idempotency_key_is_unique_per_tenant) {
    auto now = clock_.now();
    auto g = seed_graph(*store_, a_, now);
    auto save_run = [&](request_context const& ctx, std::string const& conn_id) {
        return store_->transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto conn = must(uow.connections().find(conn_id));
            auto run = must(runs::integration_run::create(ctx, now, conn, "sms.send", std::string("same-key")));
            return uow.runs().save(run);
        });
    };
    must(save_run(a_, g.connection_id));
    auto again = save_run(a_, g.connection_id);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error(), errc::already_exists);
    auto gb = seed_graph(*store_, b_, now, "acme", "B.Assembly");
    must(save_run(b_, gb.connection_id));
}

// Processes sharing the store refresh a credential's OAuth2 token one at a time: a lease is held
// by one owner until it ends or lapses, and only in its tenant.
TEST_P(store_conformance, a_refresh_lease_has_one_owner_until_it_ends_or_lapses) {
    auto now = clock_.now();
    auto const id = std::string("cred-01JD3Q8V6X4T2M9R5B7N1K0FZC");
    auto lease = [&](request_context const& ctx, std::string const& owner, time_point at) {
        bool taken = false;
        write(ctx, [&](unit_of_work& uow) -> result<void> {
            taken = must(uow.credentials().lease_refresh(id, owner, at, at + 30s));
            return {};
        });
        return taken;
    };
    auto end = [&](request_context const& ctx, std::string const& owner) {
        write(ctx, [&](unit_of_work& uow) { return uow.credentials().end_refresh_lease(id, owner); });
    };
    EXPECT_TRUE(lease(a_, "p1", now));
    EXPECT_FALSE(lease(a_, "p2", now + 10s)) << "p1 holds it";
    EXPECT_TRUE(lease(b_, "p2", now)) << "another tenant's credential of the same id is another lease";
    EXPECT_TRUE(lease(a_, "p1", now + 20s)) << "the owner extends its own lease (to 50 s)";
    EXPECT_FALSE(lease(a_, "p2", now + 40s)) << "the extension holds";
    end(a_, "p2");  // not p2's to end
    EXPECT_FALSE(lease(a_, "p2", now + 41s));
    EXPECT_TRUE(lease(a_, "p2", now + 50s)) << "a lease past its end is free (its owner stopped)";
    end(a_, "p2");
    EXPECT_TRUE(lease(a_, "p1", now + 51s)) << "ended";
    end(a_, "p1");
    end(a_, "p1");  // none held: not an error
    auto r = store_->read(a_, [&](unit_of_work& uow) -> result<void> {
        auto t = uow.credentials().lease_refresh(id, "p3", now, now + 30s);
        return t ? result<void>() : result<void>(t.error());
    });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::invalid_state) << "a read-only unit takes no lease";
}

TEST_P(store_conformance, tenants_lists_every_tenant_with_connections_or_credentials) {
    EXPECT_TRUE(must(store_->tenants()).empty());
    seed_graph(*store_, a_, clock_.now());
    seed_graph(*store_, b_, clock_.now(), "acme", "B.Assembly");
    EXPECT_EQ(must(store_->tenants()), (std::vector<std::string>{"tenant-a", "tenant-b"}));
    // A tenant with nothing but a provider has data (its events) that retention must reach.
    auto c = request_context::for_tenant("tenant-c", "carol");
    must(store_->transact(c, [&](unit_of_work& uow) -> result<void> {
        auto p = must(providers::integration_provider::register_new(c, clock_.now(), provider_spec("only")));
        return uow.providers().save(p);
    }));
    EXPECT_EQ(must(store_->tenants()), (std::vector<std::string>{"tenant-a", "tenant-b", "tenant-c"}));
}

TEST_P(store_conformance, tenants_include_a_tenant_with_only_runs_failures_deliveries_or_claims_left) {
    // Its connections and credentials archived, a tenant still has rows for retention to end.
    auto now = clock_.now();
    auto only = [&](std::string const& tenant, auto save) {
        auto ctx = request_context::for_tenant(tenant, "carol");
        write(ctx, [&](unit_of_work& uow) { return save(ctx, uow); });
    };
    only("tenant-c", [&](request_context const& ctx, unit_of_work& uow) {
        auto conn = active_connection(ctx, now, active_provider(ctx, now));
        auto run = must(runs::integration_run::create(ctx, now, conn, "sms.send"));
        must(run.start(conn, false, now));
        return uow.runs().save(run);
    });
    only("tenant-d", [&](request_context const& ctx, unit_of_work& uow) {
        auto f = must(failures::integration_failure::record(
            ctx, now, failures::failure_source::run, new_id(id_prefix::run, now), new_id(id_prefix::provider, now),
            {failures::failure_category::validation, "http_422", "bad", failures::next_action::dead_letter, std::nullopt}));
        return uow.failures().save(f);
    });
    only("tenant-e", [&](request_context const& ctx, unit_of_work& uow) {
        auto in = must(webhooks::webhook_delivery::inbound(ctx, now, new_id(id_prefix::connection, now), new_id(id_prefix::provider, now), "gh-1", "push",
                                                          std::string("blob://in"), std::string("abc")));
        return uow.deliveries().save(in);
    });
    only("tenant-f", [&](request_context const&, unit_of_work& uow) { return uow.idempotency().claim("order-1", "digest"); });
    EXPECT_EQ(must(store_->tenants()), (std::vector<std::string>{"tenant-c", "tenant-d", "tenant-e", "tenant-f"}));
}

TEST_P(store_conformance, an_idempotency_claim_stays_as_long_as_its_run) {
    auto now = clock_.now();
    auto g = seed_graph(*store_, a_, now);
    std::string run_id;
    write(a_, [&](unit_of_work& uow) -> result<void> {
        auto conn = must(uow.connections().find(g.connection_id));
        auto run = must(runs::integration_run::create(a_, now, conn, "sms.send", std::string("order-1")));
        must(run.start(conn, false, now));
        run_id = run.id();
        if (auto r = uow.idempotency().claim("order-1", "digest-1"); !r) return r;
        if (auto r = uow.idempotency().claim("order-2", "digest-2"); !r) return r;
        return uow.runs().save(run);
    });
    auto remove_old = [&] {
        return must(storage::transact_for(*store_, a_, [&](unit_of_work& uow) {
            return uow.idempotency().remove_before(now + std::chrono::hours(1), 10);
        }));
    };
    // Freed while its run is kept (not archived: it ended late, or changed), the key would let
    // another request have that run as its replay.
    EXPECT_EQ(remove_old(), 1u) << "only order-2, whose run is gone";
    write(a_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_EQ(uow.idempotency().claim("order-1", "another").error(), errc::idempotency_key_reused);
        return uow.runs().remove(run_id);
    });
    EXPECT_EQ(remove_old(), 1u);
}

TEST_P(store_conformance, read_only_units_refuse_to_save) {
    auto r = store_->read(a_, [&](unit_of_work& uow) -> result<void> {
        auto p = must(providers::integration_provider::register_new(a_, clock_.now(), provider_spec("ro")));
        return uow.providers().save(p);
    });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::invalid_state);
}

TEST_P(store_conformance, events_enter_the_outbox_in_the_canonical_envelope) {
    auto ctx = a_;
    ctx.correlation_id = "corr-1";
    ctx.causation_id = "cmd-1";
    auto g = seed_graph(*store_, ctx, clock_.now());
    auto events = must(store_->pending_events(100));
    ASSERT_GE(events.size(), 3u);
    std::vector<std::string> types;
    for (auto const& rec : events) {
        auto const& e = rec.envelope;
        types.push_back(e.event_type);
        EXPECT_TRUE(is_valid_id(e.event_id, "evt"));
        EXPECT_EQ(e.schema_version, 1);
        EXPECT_EQ(e.tenant_id, "tenant-a");
        EXPECT_EQ(e.trace_id, ctx.trace.trace_id);
        EXPECT_EQ(e.span_id, ctx.trace.span_id);
        EXPECT_EQ(e.correlation_id, "corr-1");
        EXPECT_EQ(e.causation_id, "cmd-1");
        EXPECT_FALSE(e.source.empty());
        EXPECT_EQ(e.aggregate_version, 1);
    }
    EXPECT_EQ(types, (std::vector<std::string>{"IntegrationProviderRegistered", "ExternalApiClientRegistered",
                                               "IntegrationConnectionEstablished"}));
    EXPECT_EQ(events[0].envelope.aggregate_type, "IntegrationProvider");
    EXPECT_EQ(events[0].envelope.aggregate_id, g.provider_id);
    EXPECT_LT(events[0].sequence, events[1].sequence);
}

class recording_publisher final : public events::event_publisher {
public:
    result<void> publish(events::event_envelope const& e) override {
        std::lock_guard lock(mutex);
        if (fail_on == e.event_type && failures_left > 0) {
            --failures_left;
            return error{errc::unavailable, "bus down"};
        }
        seen.push_back(e);
        return {};
    }
    std::mutex mutex;
    std::vector<events::event_envelope> seen;
    std::string fail_on;
    int failures_left = 0;
};

// An inbound canonical event's body is kept once, as the delivery's payload, and its envelope
// leaves it out: read back for publishing, the event must be byte for byte the envelope the
// old way (the body inside the stored envelope) gave for the same receive.
TEST_P(store_conformance, an_inbound_body_kept_once_reads_back_as_the_envelope_that_held_it) {
    auto now = clock_.now();
    auto g = seed_graph(*store_, a_, now);
    struct body_case {
        std::string raw;
        webhooks::body_format format;
        bool kept_once;
    };
    std::vector<body_case> const cases{
        {R"({"action":"opened","number":42,"pull_request":{"title":"Fix \"quotes\", \\ and \/ \u00e9 \ud83d\ude00","draft":false,"labels":[],"user":null},"big":18446744073709551615,"low":-9223372036854775808,"dup":1,"dup":2,"nested":[[[{"a":[1,[2,[3]]]}]]]})",
         webhooks::body_format::json, true},
        {"  [1, \"two\", {\"three\": [true, false, null]}]\n", webhooks::body_format::json, true},
        {"null", webhooks::body_format::json, true},
        {"\"just text\"", webhooks::body_format::json, true},
        {"To=%2B18005551212&From=%2B1234&Body=hi+there%21&To=%2B1999&Empty=&Caf%C3%A9=%C3%A9", webhooks::body_format::form,
         true},
        // A double's text read back may differ from the vendor's in the last bit: that body stays.
        {R"({"amount":12.5,"ratio":0.1,"tiny":5e-324,"n":1})", webhooks::body_format::json, false},
    };
    int n = 0;
    for (auto const& c : cases) {
        SCOPED_TRACE(c.raw);
        auto d = must(webhooks::webhook_delivery::inbound(a_, now, g.connection_id, g.provider_id,
                                                          "vendor-" + std::to_string(++n), "github.push", {}, "hash"));
        must(d.keep_payload(storage::stored_payload_ref(a_.tenant_id, d.id())));
        auto body = webhooks::parse_body(c.raw, c.format);
        ASSERT_TRUE(body);
        must(d.accept({.signature_valid = true, .tenant_resolved = true}, now, std::move(*body)));
        auto old_way = storage::prepare_inbound(d, a_, now, store_->event_source(), c.raw);
        auto prepared = storage::prepare_inbound(std::move(d), a_, now, store_->event_source(), c.raw, c.format);
        ASSERT_EQ(prepared.events.size(), 2u);
        EXPECT_FALSE(prepared.events[0].body_from_payload) << "WebhookDelivered has no body";
        EXPECT_EQ(prepared.events[1].body_from_payload.has_value(), c.kept_once);
        EXPECT_EQ(prepared.events[1].json.find("\"body\"") == std::string::npos, c.kept_once);
        write(a_, [&](unit_of_work& uow) -> result<void> {
            auto r = uow.deliveries().add_inbound(prepared);
            if (!r) return r.error();
            EXPECT_FALSE(*r);
            return {};
        });
        std::vector<events::event_envelope> read_back;
        for (auto& rec : must(store_->pending_events(500)))
            if (rec.envelope.aggregate_id == prepared.delivery.id()) read_back.push_back(std::move(rec.envelope));
        ASSERT_EQ(read_back.size(), 2u);
        for (std::size_t i = 0; i < 2; ++i) {
            // The old way's envelope as it was stored (its text, then the identity its columns
            // hold), with the event id this wrapping drew.
            auto old_envelope = boost::json::parse(old_way.events[i].json).as_object();
            auto const& columns = old_way.events[i].envelope;
            old_envelope["eventId"] = prepared.events[i].envelope.event_id;
            old_envelope["eventType"] = columns.event_type;
            old_envelope["occurredAt"] = format_time(columns.occurred_at);
            old_envelope["tenantId"] = columns.tenant_id;
            old_envelope["aggregateType"] = columns.aggregate_type;
            old_envelope["aggregateId"] = columns.aggregate_id;
            old_envelope["aggregateVersion"] = columns.aggregate_version;
            auto expected = events::serialize_envelope(must(value_from_json<events::event_envelope>(old_envelope)));
            EXPECT_EQ(events::serialize_envelope(read_back[i]), expected);
        }
    }
    // Published, the rows read the same way (the relay hands these envelopes to subscribers).
    recording_publisher pub;
    events::outbox_relay relay(*store_, pub, {.batch = 500, .clock = &clock_});
    auto pending = must(store_->pending_events(500));
    EXPECT_EQ(must(relay.run_once()), pending.size());
    ASSERT_EQ(pub.seen.size(), pending.size());
    for (std::size_t i = 0; i < pending.size(); ++i)
        EXPECT_EQ(events::serialize_envelope(pub.seen[i]), events::serialize_envelope(pending[i].envelope));
}

TEST_P(store_conformance, relay_publishes_at_least_once_in_order_and_marks_published) {
    auto g = seed_graph(*store_, a_, clock_.now());
    write(a_, [&](unit_of_work& uow) -> result<void> {
        auto c = must(uow.connections().find(g.connection_id));
        must(c.retire("done"));
        return uow.connections().save(c);
    });
    recording_publisher pub;
    pub.fail_on = "ExternalApiClientRegistered";
    pub.failures_left = 1;
    events::outbox_relay relay(*store_, pub, {.batch = 10, .clock = &clock_});
    // The failing event holds back its own aggregate only: the connection's events go on.
    EXPECT_EQ(must(relay.run_once()), 3u);
    EXPECT_EQ(pub.seen.size(), 3u);
    EXPECT_TRUE(must(store_->pending_events(100)).empty()) << "offered again before its retry (1 s after the failure)";
    EXPECT_EQ(must(relay.run_once()), 0u);
    clock_.advance(std::chrono::seconds(1));
    EXPECT_EQ(must(store_->pending_events(100)).size(), 1u);
    EXPECT_EQ(must(relay.run_once()), 1u);
    std::vector<std::string> types;
    for (auto const& e : pub.seen) types.push_back(e.event_type);
    EXPECT_EQ(types, (std::vector<std::string>{"IntegrationProviderRegistered", "IntegrationConnectionEstablished",
                                               "IntegrationConnectionRetired", "ExternalApiClientRegistered"}));
    EXPECT_EQ(pub.seen[1].aggregate_version, 1);
    EXPECT_EQ(pub.seen[2].aggregate_version, 2);
    EXPECT_TRUE(must(store_->pending_events(100)).empty());
    EXPECT_EQ(must(relay.run_once()), 0u);
    EXPECT_EQ(relay.stats().published, 4u);
    EXPECT_EQ(relay.stats().failed_attempts, 1u);
    EXPECT_EQ(relay.stats().dead, 0u);
}

/** Fails every event of one aggregate, forever. */
class poisoned_publisher final : public events::event_publisher {
public:
    explicit poisoned_publisher(std::string aggregate_id) : poisoned_(std::move(aggregate_id)) {}
    result<void> publish(events::event_envelope const& e) override {
        std::lock_guard lock(mutex_);
        if (e.aggregate_id == poisoned_) {
            ++refused;
            return error{errc::unavailable, "the consumer rejects this event"};
        }
        seen.push_back(e);
        return {};
    }
    std::vector<std::string> seen_types() {
        std::lock_guard lock(mutex_);
        std::vector<std::string> out;
        for (auto const& e : seen) out.push_back(e.event_type);
        return out;
    }
    std::vector<events::event_envelope> seen;
    int refused = 0;

private:
    std::mutex mutex_;
    std::string poisoned_;
};

// An aggregate whose event failed offers only that event once its retry is due, never its later
// events with it: a long backlog behind a failing event does not fill the relay's batch.
TEST_P(store_conformance, a_failed_event_due_again_is_offered_without_its_aggregates_later_events) {
    auto g = seed_graph(*store_, a_, clock_.now());
    write(a_, [&](unit_of_work& uow) -> result<void> {
        auto c = must(uow.connections().find(g.connection_id));
        must(c.retire("done"));
        return uow.connections().save(c);
    });
    auto of_connection = [&] {
        std::vector<std::string> types;
        for (auto const& r : must(store_->pending_event_rows(100)))
            if (r.envelope.aggregate_id == g.connection_id) types.push_back(r.envelope.event_type);
        return types;
    };
    ASSERT_EQ(of_connection(), (std::vector<std::string>{"IntegrationConnectionEstablished", "IntegrationConnectionRetired"}));
    auto head = must(store_->pending_event_rows(100));
    auto established = std::find_if(head.begin(), head.end(), [&](auto const& r) { return r.envelope.aggregate_id == g.connection_id; });
    EXPECT_EQ(must(store_->count_failed_publication(established->sequence, 5s)), 1);
    EXPECT_TRUE(of_connection().empty()) << "offered before its retry";
    clock_.advance(5s);
    EXPECT_EQ(of_connection(), std::vector<std::string>{"IntegrationConnectionEstablished"})
        << "the later event came with the failed one";
    std::vector<std::int64_t> done{established->sequence};
    must(store_->mark_published(done, clock_.now()));
    EXPECT_EQ(of_connection(), std::vector<std::string>{"IntegrationConnectionRetired"});
}

/** Fails every event of one aggregate while `down`. */
class outage_publisher final : public events::event_publisher {
public:
    explicit outage_publisher(std::string aggregate_id) : aggregate_(std::move(aggregate_id)) {}
    bool down = true;
    int refused = 0;
    std::vector<events::event_envelope> seen;
    result<void> publish(events::event_envelope const& e) override {
        if (down && e.aggregate_id == aggregate_) {
            ++refused;
            return error{errc::unavailable, "the message bus is down"};
        }
        seen.push_back(e);
        return {};
    }

private:
    std::string aggregate_;
};

// A consumer down for 20 s, the relay passing every second: the failed event is tried again 1, 2,
// 4, 8 and 16 s after its failures, not at every pass, so the outage does not spend its attempts
// (6 here) and nothing is parked; its aggregate waits whole meanwhile, even where its events would
// fill the batch (2 here), while other tenants' events go; once the consumer is back the waiting
// events go, in order.
TEST_P(store_conformance, relay_waits_out_a_consumer_outage_with_backoff_and_lets_other_aggregates_by) {
    auto g = seed_graph(*store_, a_, clock_.now());
    write(a_, [&](unit_of_work& uow) -> result<void> {
        auto c = must(uow.connections().find(g.connection_id));
        must(c.retire("done"));
        return uow.connections().save(c);
    });
    outage_publisher pub(g.connection_id);
    events::outbox_relay relay(*store_, pub, {.batch = 2, .clock = &clock_, .max_attempts = 6});
    auto of = [&](std::string const& aggregate) {
        std::vector<std::string> types;
        for (auto const& e : pub.seen)
            if (e.aggregate_id == aggregate) types.push_back(e.event_type);
        return types;
    };
    std::string other_connection;
    for (int second = 0; second < 40; ++second) {
        if (second == 2) other_connection = seed_graph(*store_, b_, clock_.now(), "other").connection_id;
        if (second == 20) {
            pub.down = false;
            EXPECT_EQ(of(other_connection), std::vector<std::string>{"IntegrationConnectionEstablished"})
                << "another tenant's events waited behind the failing aggregate";
            EXPECT_TRUE(of(g.connection_id).empty());
        }
        must(relay.run_once());
        clock_.advance(1s);
    }
    EXPECT_EQ(pub.refused, 5) << "tried at 1, 2, 4, 8 and 16 s (the first pass published the provider's and client's events)";
    EXPECT_EQ(relay.stats().dead, 0u);
    EXPECT_EQ(of(g.connection_id),
              (std::vector<std::string>{"IntegrationConnectionEstablished", "IntegrationConnectionRetired"}));
    EXPECT_TRUE(must(store_->pending_events(100)).empty());
}

TEST_P(store_conformance, relay_parks_a_poison_event_as_dead_and_keeps_other_aggregates_flowing) {
    auto g = seed_graph(*store_, a_, clock_.now());
    write(a_, [&](unit_of_work& uow) -> result<void> {
        auto c = must(uow.connections().find(g.connection_id));
        must(c.retire("done"));
        return uow.connections().save(c);
    });
    auto poison = must(store_->pending_events(100));
    auto established = std::find_if(poison.begin(), poison.end(), [](auto const& r) {
        return r.envelope.event_type == "IntegrationConnectionEstablished";
    });
    ASSERT_NE(established, poison.end());
    poisoned_publisher pub(g.connection_id);
    events::outbox_relay relay(*store_, pub, {.batch = 10, .clock = &clock_, .max_attempts = 3});

    EXPECT_EQ(must(relay.run_once()), 2u);  // the provider's and the client's events
    EXPECT_EQ(must(relay.run_once()), 0u);  // the establishment waits for its retry, the retirement behind it
    EXPECT_EQ(pub.refused, 1);
    clock_.advance(std::chrono::seconds(1));
    EXPECT_EQ(must(relay.run_once()), 0u);
    EXPECT_EQ(pub.refused, 2);               // the retirement waited behind the establishment each time
    EXPECT_EQ(relay.stats().dead, 0u);
    EXPECT_TRUE(must(store_->pending_events(100)).empty()) << "the second retry is 2 s after the second failure";
    clock_.advance(std::chrono::seconds(2));
    EXPECT_EQ(must(store_->pending_events(100)).size(), 1u) << "due again, the failed event alone: the later one waits";

    EXPECT_EQ(must(relay.run_once()), 0u);  // the third failure parks it
    EXPECT_EQ(pub.refused, 3);
    EXPECT_EQ(relay.stats().dead, 1u);
    EXPECT_EQ(relay.stats().failed_attempts, 3u);
    // Dead, it is no longer offered, and its aggregate's later event waits behind it: what is
    // pending is the IntegrationFailed event of the failure recorded for it.
    auto left = must(store_->pending_events(100));
    ASSERT_EQ(left.size(), 1u);
    EXPECT_EQ(left[0].envelope.event_type, "IntegrationFailed");
    EXPECT_EQ(left[0].envelope.data.at("sourceId").as_string(), established->envelope.event_id);
    EXPECT_EQ(must(relay.run_once()), 1u);
    EXPECT_TRUE(must(store_->pending_events(100)).empty());
    EXPECT_EQ(must(relay.run_once()), 0u);
    EXPECT_EQ(pub.refused, 3);

    // Other aggregates keep flowing, the tenant's and another tenant's.
    seed_graph(*store_, b_, clock_.now(), "other");
    EXPECT_EQ(must(relay.run_once()), 3u);
    auto types = pub.seen_types();
    EXPECT_EQ(std::count(types.begin(), types.end(), "IntegrationConnectionEstablished"), 1);  // tenant b's
    EXPECT_EQ(std::count(types.begin(), types.end(), "IntegrationConnectionRetired"), 0);

    // The poison event is an IntegrationFailure in its own tenant, and nowhere else.
    read(a_, [&](unit_of_work& uow) -> result<void> {
        auto list = must(uow.failures().list({}, {}));
        EXPECT_EQ(list.items.size(), 1u);
        if (list.items.empty()) return {};
        auto const& f = list.items.front();
        EXPECT_EQ(f.data().source, failures::failure_source::outbox_event);
        EXPECT_EQ(f.data().event_id, established->envelope.event_id);
        EXPECT_EQ(f.source_id(), established->envelope.event_id);
        EXPECT_EQ(f.data().category, failures::failure_category::poison);
        EXPECT_EQ(f.data().next_action, failures::next_action::dead_letter);
        EXPECT_EQ(f.data().error_code, "publish_failed");
        EXPECT_NE(f.data().message.find("the consumer rejects this event"), std::string::npos) << f.data().message;
        EXPECT_EQ(f.meta().tenant_id, "tenant-a");
        return {};
    });
    read(b_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_TRUE(must(uow.failures().list({}, {})).items.empty());
        return {};
    });
}

TEST_P(store_conformance, pending_authorizations_are_used_once_expire_and_stay_in_their_tenant) {
    auto now = clock_.now();
    storage::pending_authorization p{"hash-1", "prov-1", "conn-1", "alice", R"({"clientId":"c"})",
                                     "vault://local/tenant-a/secret-1", now + 10min};
    write(a_, [&](unit_of_work& uow) { return uow.authorizations().add(p); });
    EXPECT_EQ(store_->transact(a_, [&](unit_of_work& uow) { return uow.authorizations().add(p); }).error(),
              errc::already_exists);
    // Another tenant neither finds nor takes it.
    EXPECT_EQ(store_->transact(b_, [&](unit_of_work& uow) { return uow.authorizations().take("hash-1", now).error(); })
                  .error(),
              errc::not_found);
    auto taken = storage::transact_for(*store_, a_, [&](unit_of_work& uow) { return uow.authorizations().take("hash-1", now); });
    ASSERT_TRUE(taken) << taken.error().message();
    EXPECT_EQ(taken->provider_id, "prov-1");
    EXPECT_EQ(taken->connection_id, std::optional<std::string>("conn-1"));
    EXPECT_EQ(taken->actor, "alice");
    EXPECT_EQ(taken->settings, R"({"clientId":"c"})");
    EXPECT_EQ(taken->secret_ref, p.secret_ref);
    EXPECT_EQ(taken->expires_at, p.expires_at);
    // Used once.
    EXPECT_EQ(storage::transact_for(*store_, a_, [&](unit_of_work& uow) { return uow.authorizations().take("hash-1", now); })
                  .error(),
              errc::not_found);

    // An expired flow is refused; purging removes expired flows only, in this tenant only.
    auto late = p;
    late.state_hash = "hash-late";
    late.connection_id.reset();
    auto fresh = p;
    fresh.state_hash = "hash-fresh";
    fresh.expires_at = now + 1h;
    write(a_, [&](unit_of_work& uow) -> result<void> {
        if (auto r = uow.authorizations().add(late); !r) return r;
        return uow.authorizations().add(fresh);
    });
    write(b_, [&](unit_of_work& uow) { return uow.authorizations().add(late); });
    EXPECT_EQ(storage::transact_for(*store_, a_, [&](unit_of_work& uow) {
                  return uow.authorizations().take("hash-late", now + 10min);
              }).error(),
              errc::forbidden);
    // (The refusal rolled its unit back; a caller purges first to drop an expired flow for good.)
    auto purged = storage::transact_for(*store_, a_, [&](unit_of_work& uow) { return uow.authorizations().purge_expired(now + 30min); });
    ASSERT_TRUE(purged);
    ASSERT_EQ(purged->size(), 1u);
    EXPECT_EQ(purged->front().state_hash, "hash-late");
    EXPECT_FALSE(purged->front().connection_id);
    EXPECT_EQ(storage::transact_for(*store_, a_, [&](unit_of_work& uow) {
                  return uow.authorizations().take("hash-late", now);
              }).error(),
              errc::not_found);
    EXPECT_TRUE(storage::transact_for(*store_, a_, [&](unit_of_work& uow) { return uow.authorizations().take("hash-fresh", now); }));
    EXPECT_TRUE(storage::transact_for(*store_, b_, [&](unit_of_work& uow) { return uow.authorizations().take("hash-late", now); }));
    // A read-only unit cannot take one.
    EXPECT_EQ(store_->read(a_, [&](unit_of_work& uow) { return uow.authorizations().add(p); }).error(), errc::invalid_state);
}

TEST_P(store_conformance, idempotency_keys_are_claimed_per_tenant_for_one_request) {
    write(a_, [&](unit_of_work& uow) { return uow.idempotency().claim("key-1", "hash-x"); });
    write(a_, [&](unit_of_work& uow) { return uow.idempotency().claim("key-1", "hash-x"); });  // the same request again
    auto other = store_->transact(a_, [&](unit_of_work& uow) { return uow.idempotency().claim("key-1", "hash-y"); });
    ASSERT_FALSE(other);
    EXPECT_EQ(other.error(), errc::idempotency_key_reused);
    EXPECT_NE(other.error().detail().find("key-1"), std::string::npos);
    write(b_, [&](unit_of_work& uow) { return uow.idempotency().claim("key-1", "hash-y"); });  // another tenant's key
    // A claim in a unit that fails is rolled back with it: the key stays free.
    auto failed = store_->transact(a_, [&](unit_of_work& uow) -> result<void> {
        must(uow.idempotency().claim("key-2", "hash-x"));
        return error{errc::invalid_argument, "the run was refused"};
    });
    ASSERT_FALSE(failed);
    write(a_, [&](unit_of_work& uow) { return uow.idempotency().claim("key-2", "hash-y"); });
}

TEST_P(store_conformance, api_keys_are_found_by_hash_across_tenants) {
    auto& keys = store_->api_keys();
    must(keys.add({"h-a", "tenant-a", false}));
    must(keys.add({"h-admin", "tenant-b", true}));
    EXPECT_EQ(keys.add({"h-a", "tenant-b", true}).error(), errc::already_exists);
    EXPECT_EQ(keys.add({"h-bad", "bad tenant!", false}).error(), errc::invalid_argument);
    auto a = must(keys.find("h-a"));
    ASSERT_TRUE(a);
    EXPECT_EQ(a->tenant_id, "tenant-a");
    EXPECT_FALSE(a->admin);
    auto admin = must(keys.find("h-admin"));
    ASSERT_TRUE(admin);
    EXPECT_TRUE(admin->admin);
    EXPECT_FALSE(must(keys.find("h-unknown")));
}

TEST_P(store_conformance, inbound_webhook_registrations_are_per_tenant_and_replaced) {
    write(a_, [&](unit_of_work& uow) { return uow.inbound_webhooks().save({"conn-1", "github", "inbound-webhook.conn-1"}); });
    write(a_, [&](unit_of_work& uow) { return uow.inbound_webhooks().save({"conn-1", "stripe", "inbound-webhook.conn-1"}); });
    read(a_, [&](unit_of_work& uow) -> result<void> {
        auto r = must(uow.inbound_webhooks().find("conn-1"));
        EXPECT_EQ(r.scheme, "stripe");
        EXPECT_EQ(r.secret_name, "inbound-webhook.conn-1");
        EXPECT_EQ(uow.inbound_webhooks().find("conn-2").error(), errc::not_found);
        return {};
    });
    read(b_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_EQ(uow.inbound_webhooks().find("conn-1").error(), errc::not_found);
        return {};
    });
}

TEST_P(store_conformance, an_inbound_endpoint_is_found_by_connection_id_alone_unless_retired) {
    auto now = clock_.now();
    auto g = seed_graph(*store_, a_, now);
    auto until = now + std::chrono::hours(1);
    write(a_, [&](unit_of_work& uow) {
        return uow.inbound_webhooks().save({g.connection_id, "github", "inbound-webhook.new",
                                            {{"inbound-webhook.old", until}, {"inbound-webhook.older", until - std::chrono::minutes(30)}}});
    });
    auto found = must(store_->find_inbound_endpoint(g.connection_id));
    ASSERT_TRUE(found);
    EXPECT_EQ(found->tenant_id, "tenant-a");
    EXPECT_EQ(found->provider_id, g.provider_id);
    EXPECT_EQ(found->registration.scheme, "github");
    EXPECT_EQ(found->registration.secret_name, "inbound-webhook.new");
    EXPECT_EQ(found->registration.previous,
              (std::vector<storage::replaced_secret>{{"inbound-webhook.old", until},
                                                     {"inbound-webhook.older", until - std::chrono::minutes(30)}}));
    write(a_, [&](unit_of_work& uow) {  // a registration saved again names only what it names
        return uow.inbound_webhooks().save({g.connection_id, "github", "inbound-webhook.newer", {{"inbound-webhook.new", until}}});
    });
    EXPECT_EQ(must(store_->find_inbound_endpoint(g.connection_id))->registration.previous,
              (std::vector<storage::replaced_secret>{{"inbound-webhook.new", until}}));
    EXPECT_FALSE(must(store_->find_inbound_endpoint("con-unknown")));
    // A registration saved in another tenant under A's connection id names no connection of its own.
    write(b_, [&](unit_of_work& uow) { return uow.inbound_webhooks().save({"con-b-only", "github", "x"}); });
    EXPECT_FALSE(must(store_->find_inbound_endpoint("con-b-only")));
    write(a_, [&](unit_of_work& uow) -> result<void> {
        auto c = must(uow.connections().find(g.connection_id));
        must(c.retire("gone"));
        return uow.connections().save(c);
    });
    EXPECT_FALSE(must(store_->find_inbound_endpoint(g.connection_id))) << "a Retired connection is not an endpoint";
}

TEST_P(store_conformance, a_stored_payload_belongs_to_its_delivery_and_tenant) {
    auto now = clock_.now();
    auto g = seed_graph(*store_, a_, now);
    std::string id;
    std::string const bytes("raw\0bytes\xff", 10);
    write(a_, [&](unit_of_work& uow) -> result<void> {
        auto d = must(webhooks::webhook_delivery::inbound(a_, now, g.connection_id, g.provider_id, "p-1", "github.push", {}, {}));
        id = d.id();
        if (auto r = uow.deliveries().save(d); !r) return r;
        return uow.deliveries().put_payload(id, bytes);
    });
    read(a_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_EQ(must(uow.deliveries().payload(id)), bytes);
        return {};
    });
    read(b_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_EQ(uow.deliveries().payload(id).error(), errc::not_found);
        return {};
    });
    EXPECT_EQ(store_->transact(b_, [&](unit_of_work& uow) { return uow.deliveries().put_payload(id, "other"); }).error(),
              errc::not_found);
    write(a_, [&](unit_of_work& uow) { return uow.deliveries().remove_payload(id); });
    read(a_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_EQ(uow.deliveries().payload(id).error(), errc::not_found);
        return {};
    });
    write(a_, [&](unit_of_work& uow) { return uow.deliveries().put_payload(id, bytes); });
    write(a_, [&](unit_of_work& uow) { return uow.deliveries().remove(id); });
    read(a_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_EQ(uow.deliveries().payload(id).error(), errc::not_found) << "deleting a delivery deletes its payload";
        return {};
    });
}

TEST_P(store_conformance, concurrent_units_from_many_threads_all_commit_or_fail_alone) {
    auto g = seed_graph(*store_, a_, clock_.now());
    constexpr int threads = 8, per_thread = 25;
    std::atomic<int> ok{0}, refused{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            for (int i = 0; i < per_thread; ++i) {
                auto r = store_->transact(a_, [&](unit_of_work& uow) -> result<void> {
                    auto conn = uow.connections().find(g.connection_id);
                    if (!conn) return conn.error();
                    auto run = runs::integration_run::create(a_, clock_.now(), *conn, "sms.send");
                    if (!run) return run.error();
                    if (auto s = uow.runs().save(*run); !s) return s;
                    // Every third unit fails after writing: only it may roll back.
                    if (i % 3 == 0) return error{errc::invalid_argument, "refused on purpose"};
                    return {};
                });
                (r ? ok : refused)++;
                (void)t;
            }
        });
    for (auto& th : pool) th.join();
    EXPECT_EQ(refused.load(), threads * 9);
    EXPECT_EQ(ok.load(), threads * (per_thread - 9));
    std::size_t stored = 0;
    storage::page_request req{.limit = 500};
    read(a_, [&](unit_of_work& uow) -> result<void> {
        stored = must(uow.runs().list({}, req)).items.size();
        return {};
    });
    EXPECT_EQ(stored, static_cast<std::size_t>(ok.load()));
}

TEST_P(store_conformance, retry_leases_give_each_due_failure_to_one_worker_until_they_expire_or_are_released_and_tell_which_lapsed) {
    auto now = clock_.now();
    std::vector<std::string> ids;
    write(a_, [&](unit_of_work& uow) -> result<void> {
        for (int i = 0; i < 4; ++i) {
            auto f = must(failures::integration_failure::record(
                a_, now, failures::failure_source::run, "run-" + std::to_string(i), "prov-1",
                {failures::failure_category::transient, "http_503", "busy", failures::next_action::retry, now}));
            ids.push_back(f.id());
            must(uow.failures().save(f));
        }
        // Due earlier, but not a run's: the delivery worker and the health prober retry their own.
        for (auto source : {failures::failure_source::delivery, failures::failure_source::health_probe}) {
            auto f = must(failures::integration_failure::record(
                a_, now, source, "src-1", "prov-1",
                {failures::failure_category::transient, "http_503", "busy", failures::next_action::retry, now - std::chrono::seconds(1)}));
            must(uow.failures().save(f));
        }
        return {};
    });
    std::set<std::string> lapsed;  // the failures a claim reported leased before, the lease not given back
    auto claim = [&](request_context const& ctx, std::string const& owner, time_point at, std::size_t limit) {
        std::vector<std::string> got;
        write(ctx, [&](unit_of_work& uow) -> result<void> {
            for (auto const& l : must(uow.failures().claim_due(at, owner, at + std::chrono::seconds(30), limit))) {
                got.push_back(l.failure.id());
                if (l.lease_lapsed) lapsed.insert(l.failure.id());
            }
            return {};
        });
        return got;
    };
    auto first = claim(a_, "worker-1", now, 3);
    auto second = claim(a_, "worker-2", now, 10);
    EXPECT_EQ(first.size(), 3u);
    ASSERT_EQ(second.size(), 1u);  // only the one worker-1 did not take
    for (auto const& id : first) EXPECT_NE(id, second[0]);
    EXPECT_TRUE(claim(b_, "worker-b", now, 10).empty());  // another tenant sees none of them
    EXPECT_TRUE(claim(a_, "worker-3", now + std::chrono::seconds(29), 10).empty());
    EXPECT_TRUE(lapsed.empty());
    // worker-2 finishes and releases; worker-1 dies: its leases expire.
    write(a_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_TRUE(uow.failures().release(second[0], "worker-1", std::nullopt));  // not its lease: a no-op
        return uow.failures().release(second[0], "worker-2", std::nullopt);
    });
    EXPECT_EQ(claim(a_, "worker-3", now + std::chrono::seconds(1), 10), second);
    EXPECT_TRUE(lapsed.empty());  // given back by worker-2
    auto after_death = claim(a_, "worker-4", now + std::chrono::seconds(30), 10);
    EXPECT_EQ(after_death.size(), 3u);  // worker-3 still holds its own
    // A retry worker resumes these knowing an earlier resume may have called the vendor.
    EXPECT_EQ(lapsed, std::set<std::string>(first.begin(), first.end()));
    // While leased, `leased` says so; saving the failure (its attempt recorded) ends the lease,
    // so a worker that stopped after that commit is not taken for one interrupted mid-call.
    auto const at = now + std::chrono::seconds(31);
    write(a_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_TRUE(must(uow.failures().leased(after_death[0], at)));
        EXPECT_FALSE(must(uow.failures().leased(after_death[0], now + std::chrono::seconds(61))));
        auto f = must(uow.failures().find(after_death[0]));
        must(f.record_attempt({failures::failure_category::transient, "http_503", "busy", failures::next_action::retry, at}, at));
        must(uow.failures().save(f));
        EXPECT_FALSE(must(uow.failures().leased(after_death[0], at)));
        return {};
    });
    lapsed.clear();
    auto again = claim(a_, "worker-5", at, 10);
    EXPECT_NE(std::find(again.begin(), again.end(), after_death[0]), again.end());
    EXPECT_FALSE(lapsed.contains(after_death[0])) << "a saved failure's lease read as lapsed";
    // Released with `not_before`, a failure is due no earlier than that.
    write(a_, [&](unit_of_work& uow) -> result<void> {
        return uow.failures().release(after_death[0], "worker-5", at + std::chrono::minutes(10));
    });
    auto early = claim(a_, "worker-6", at + std::chrono::minutes(9), 10);
    EXPECT_EQ(std::find(early.begin(), early.end(), after_death[0]), early.end());
    auto due = claim(a_, "worker-7", at + std::chrono::minutes(10), 10);
    EXPECT_NE(std::find(due.begin(), due.end(), after_death[0]), due.end());
}


// The run service builds a finished run's events off the store's writer (prepare_run): the store
// writes those rows as they are, with the run, as save would have written them.
TEST_P(store_conformance, save_prepared_writes_the_run_and_the_events_built_before_the_unit) {
    auto now = clock_.now();
    auto g = seed_graph(*store_, a_, now);
    auto conn = must(storage::read_for(*store_, a_, [&](unit_of_work& uow) { return uow.connections().find(g.connection_id); }));
    auto run = must(runs::integration_run::create(a_, now, conn, "sms.send", std::nullopt));
    must(run.start(conn, false, now));
    must(run.record_attempt({1, runs::attempt_status::succeeded, std::nullopt, 201, 30, now}));
    must(run.complete(now + 5ms, std::string("SM1"), std::nullopt));
    auto p = storage::prepare_run(run, a_, now, store_->event_source());
    EXPECT_TRUE(p.run.pending_events().empty());
    ASSERT_EQ(p.events.size(), 1u);
    EXPECT_EQ(p.events[0].envelope.event_type, events::event_type::run_completed);
    EXPECT_EQ(p.events[0].envelope.aggregate_type, "IntegrationRun");
    EXPECT_EQ(p.events[0].envelope.aggregate_version, 1);

    // Events that are not the run's, in this tenant, at its next version are refused, and
    // nothing of the unit is written.
    auto wrong = p;
    wrong.events[0].envelope.aggregate_version = 2;
    auto refused = store_->transact(a_, [&](unit_of_work& uow) { return uow.runs().save_prepared(wrong); });
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error(), errc::invalid_argument);
    auto foreign = p;
    refused = store_->transact(b_, [&](unit_of_work& uow) { return uow.runs().save_prepared(foreign); });
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error(), errc::invalid_argument);
    auto missing = storage::read_for(*store_, a_, [&](unit_of_work& uow) { return uow.runs().find(run.id()); });
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error(), errc::not_found);

    must(store_->transact(a_, [&](unit_of_work& uow) { return uow.runs().save_prepared(p); }));
    EXPECT_EQ(p.run.meta().version, 1);
    auto stored = must(storage::read_for(*store_, a_, [&](unit_of_work& uow) { return uow.runs().find(run.id()); }));
    EXPECT_EQ(stored.status(), runs::run_status::completed);
    ASSERT_EQ(stored.data().run_attempts.size(), 1u);
    auto pending = must(store_->pending_events(100));
    auto completed = std::count_if(pending.begin(), pending.end(), [&](storage::outbox_record const& e) {
        return e.envelope.aggregate_id == run.id() && e.envelope.event_type == events::event_type::run_completed;
    });
    EXPECT_EQ(completed, 1);
    auto it = std::find_if(pending.begin(), pending.end(), [&](storage::outbox_record const& e) {
        return e.envelope.event_id == p.events[0].envelope.event_id;
    });
    ASSERT_NE(it, pending.end());
    EXPECT_EQ(it->envelope.tenant_id, a_.tenant_id);
    EXPECT_EQ(it->envelope.aggregate_version, 1);
    EXPECT_EQ(it->envelope.source, store_->event_source());

    // Saved again from the same copy: a conflict (another unit already inserted it), no second event.
    auto again = storage::prepare_run(run, a_, now, store_->event_source());
    auto twice = store_->transact(a_, [&](unit_of_work& uow) { return uow.runs().save_prepared(again); });
    ASSERT_FALSE(twice);
}

// A run recorded behind carries its small bodies into save_prepared, which writes them with the
// run: readable as put_body's in its tenant only, an empty body kept as empty, and removed with
// the run.
TEST_P(store_conformance, save_prepared_keeps_the_bodies_it_carries_with_the_run) {
    auto now = clock_.now();
    auto g = seed_graph(*store_, a_, now);
    auto conn = must(storage::read_for(*store_, a_, [&](unit_of_work& uow) { return uow.connections().find(g.connection_id); }));
    auto finished = [&] {
        auto run = must(runs::integration_run::create(a_, now, conn, "sms.send", std::nullopt));
        must(run.start(conn, false, now));
        must(run.record_attempt({1, runs::attempt_status::succeeded, std::nullopt, 200, 3, now}));
        must(run.complete(now + 3ms, std::nullopt, std::nullopt));
        return storage::prepare_run(run, a_, now, store_->event_source());
    };
    auto body = [&](request_context const& ctx, std::string const& id, storage::run_body part) {
        return storage::read_for(*store_, ctx, [&](unit_of_work& uow) { return uow.runs().body(id, part); });
    };
    std::string const request = "{\"to\":\"+15550100\"}", response = std::string("bin\0ary", 7);

    auto both = finished();
    both.request_body = request;
    both.response_body = response;
    must(store_->transact(a_, [&](unit_of_work& uow) { return uow.runs().save_prepared(both); }));
    EXPECT_EQ(must(body(a_, both.run.id(), storage::run_body::request)), request);
    EXPECT_EQ(must(body(a_, both.run.id(), storage::run_body::response)), response);
    auto other = body(b_, both.run.id(), storage::run_body::request);
    ASSERT_FALSE(other);
    EXPECT_EQ(other.error(), errc::not_found);

    auto request_only = finished();
    request_only.request_body = request;
    auto empty_response = finished();
    empty_response.response_body = std::string_view();
    must(store_->transact(a_, [&](unit_of_work& uow) -> result<void> {
        if (auto r = uow.runs().save_prepared(request_only); !r) return r;
        return uow.runs().save_prepared(empty_response);
    }));
    EXPECT_EQ(must(body(a_, request_only.run.id(), storage::run_body::request)), request);
    EXPECT_EQ(body(a_, request_only.run.id(), storage::run_body::response).error(), errc::not_found);
    EXPECT_EQ(must(body(a_, empty_response.run.id(), storage::run_body::response)), "");
    EXPECT_EQ(body(a_, empty_response.run.id(), storage::run_body::request).error(), errc::not_found);

    must(store_->transact(a_, [&](unit_of_work& uow) { return uow.runs().remove(both.run.id()); }));
    EXPECT_EQ(body(a_, both.run.id(), storage::run_body::request).error(), errc::not_found);
    EXPECT_EQ(body(a_, both.run.id(), storage::run_body::response).error(), errc::not_found);
}

}  // namespace
}  // namespace integration::testing
