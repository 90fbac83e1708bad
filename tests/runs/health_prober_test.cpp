#include <integration/services/health_prober.hpp>
#include <integration/services/connection_service.hpp>
#include <integration/services/failure_service.hpp>

#include "support/credential_world.hpp"
#include "support/keep_alive_server.hpp"
#include "support/loopback_server.hpp"
#include "support/sqlite_file.hpp"

#include <boost/json/serialize.hpp>

#include <algorithm>
#include <atomic>
#include <thread>
#include <mutex>
#include <functional>

namespace integration::testing {
namespace {

using namespace std::chrono_literals;
using connections::connection_status;

class health_prober_test : public ::testing::Test, protected credential_world {
protected:
    void SetUp() override {
        dns_.add("api.vendor.test", {*net::ip_address::parse("127.0.0.1")});
        must(store_->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
            auto spec = provider_spec("vendor");
            spec.base_url = "http://api.vendor.test:" + std::to_string(server_.port());
            auto p = must(providers::integration_provider::register_new(ctx_, clock_.now(), spec));
            must(p.activate(1));
            provider_id_ = p.id();
            return uow.providers().save(p);
        }));
        credential_id_ = must(credentials_.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes("k"),
                                                         .api_key = credentials::api_key_placement{.name = "X-Api-Key"}}))
                             .id();
    }

    std::string pending_connection() {
        std::string id;
        must(store_->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
            auto spec = connection_spec();
            spec.endpoints.clear();
            spec.credential_id = credential_id_;
            auto c = must(connections::integration_connection::create(ctx_, clock_.now(), must(uow.providers().find(provider_id_)), spec));
            id = c.id();
            return uow.connections().save(c);
        }));
        return id;
    }

    std::vector<std::string> event_types() {
        std::vector<std::string> out;
        for (auto const& e : must(store_->pending_events(1000))) out.push_back(e.envelope.event_type);
        return out;
    }

    std::atomic<int> status_{200};
    std::atomic<bool> stop_{false};           // what `sweep` watches
    std::atomic<bool> stop_on_probe_{false};  // a probe received sets `stop_` before it is answered
    std::function<void()> on_probe_;          // runs while a probe waits for its answer (set while no probe runs)
    loopback_server server_{[this](int fd, loopback_server&) {
        if (stop_on_probe_) stop_ = true;
        if (on_probe_) on_probe_();
        auto r = "HTTP/1.1 " + std::to_string(status_.load()) + " X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        (void)::write(fd, r.data(), r.size());
    }};
    connections::health_prober prober_{*store_, credentials_, *transport_,
                                       net::egress_policy{.allow = {net::cidr::parse("127.0.0.0/8").value()}}, dns_, clock_};
    request_context ctx_ = request_context::for_tenant("t1");
    std::string provider_id_, credential_id_;
};

TEST_F(health_prober_test, a_passing_initial_probe_with_a_resolvable_credential_activates_the_connection) {
    auto id = pending_connection();
    auto c = must(prober_.test(ctx_, id));
    EXPECT_EQ(c.status(), connection_status::active);
    EXPECT_EQ(c.data().health, health_status::healthy);
    EXPECT_TRUE(c.data().established_at);
    auto seen = server_.requests();
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].rfind("GET /health HTTP/1.1", 0), 0u);
    EXPECT_NE(seen[0].find("X-Api-Key: k"), std::string::npos);
    EXPECT_EQ(event_types().back(), "IntegrationConnectionEstablished");
}

TEST_F(health_prober_test, a_failing_initial_probe_keeps_the_connection_pending) {
    status_ = 503;
    auto id = pending_connection();
    auto c = must(prober_.test(ctx_, id));
    EXPECT_EQ(c.status(), connection_status::pending);
    EXPECT_EQ(c.data().health, health_status::unhealthy);
    EXPECT_EQ(event_types().back(), "IntegrationFailed");
}

// A connection to a provider must reference an Active provider: one deprecated while the
// connection waited Pending keeps it Pending when a probe passes (its health recorded), and no
// IntegrationConnectionEstablished is raised.
TEST_F(health_prober_test, a_passing_probe_does_not_activate_a_connection_whose_provider_was_deprecated) {
    auto id = pending_connection();
    must(store_->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        auto p = must(uow.providers().find(provider_id_));
        must(p.deprecate("the vendor retired this API"));
        return uow.providers().save(p);
    }));
    auto c = must(prober_.test(ctx_, id));
    EXPECT_EQ(c.status(), connection_status::pending);
    EXPECT_EQ(c.data().health, health_status::healthy);
    auto types = event_types();
    EXPECT_EQ(std::count(types.begin(), types.end(), "IntegrationConnectionEstablished"), 0);
}

TEST_F(health_prober_test, an_unresolvable_credential_keeps_the_connection_pending_without_calling) {
    auto id = pending_connection();
    must(credentials_.revoke(ctx_, credential_id_, "gone"));
    auto c = must(prober_.test(ctx_, id));
    EXPECT_EQ(c.status(), connection_status::pending);
    EXPECT_TRUE(server_.requests().empty());
    auto failed = must(store_->pending_events(1000)).back().envelope;
    EXPECT_EQ(failed.event_type, "IntegrationFailed");
    EXPECT_EQ(failed.data.at("category").as_string(), "Auth");
}

TEST_F(health_prober_test, a_refused_destination_is_reported_before_the_credential_is_resolved) {
    std::string const client_secret = "cs-never-sent-anywhere";
    keep_alive_server idp([](received_request const&) {
        return http_answer_bytes(200, R"({"access_token":"t","expires_in":3600})");
    });
    dns_.add("inside.test", {*net::ip_address::parse("10.1.2.3")});  // refused; nothing listens there
    auto spec = provider_spec("inside");
    spec.base_url = "https://inside.test";
    auto p = must(providers::integration_provider::register_new(ctx_, clock_.now(), spec));
    must(p.activate(1));
    must(store_->transact(ctx_, [&](storage::unit_of_work& uow) { return uow.providers().save(p); }));
    auto cred = must(credentials_.create(
        ctx_, {.provider_id = p.id(), .auth_mode = auth_mode::oauth2_client_credentials, .secret = secret_bytes(client_secret),
               .oauth2 = credentials::oauth2_client_settings{"http://127.0.0.1:" + std::to_string(idp.port()) + "/token", "c1", {}}}));
    std::string id;
    must(store_->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        auto cs = connection_spec();
        cs.endpoints.clear();
        cs.credential_id = cred.id();
        auto c = must(connections::integration_connection::create(ctx_, clock_.now(), p, cs));
        id = c.id();
        return uow.connections().save(c);
    }));
    auto c = must(prober_.test(ctx_, id));
    EXPECT_EQ(c.status(), connection_status::pending);
    EXPECT_EQ(c.data().health, health_status::unhealthy);
    EXPECT_EQ(idp.accepted(), 0) << "no token was requested for a destination that is refused";
    auto failed = must(store_->pending_events(1000)).back().envelope;
    EXPECT_EQ(failed.event_type, "IntegrationFailed");
    auto text = boost::json::serialize(failed.data);
    EXPECT_NE(text.find("egress policy"), std::string::npos) << text;
    EXPECT_EQ(text.find("10.1.2.3"), std::string::npos) << text;
}

TEST_F(health_prober_test, health_moves_between_healthy_degraded_and_unhealthy) {
    auto id = pending_connection();
    must(prober_.test(ctx_, id));
    status_ = 500;
    auto c = must(prober_.test(ctx_, id));
    EXPECT_EQ(c.status(), connection_status::degraded);
    EXPECT_EQ(c.data().health, health_status::degraded);
    c = must(prober_.test(ctx_, id));
    EXPECT_EQ(c.data().health, health_status::degraded) << "the second failure in a row of unhealthy_after = 3";
    c = must(prober_.test(ctx_, id));
    EXPECT_EQ(c.data().health, health_status::unhealthy);  // the third failure in a row
    EXPECT_EQ(c.status(), connection_status::degraded);
    // Another prober (a restart) counts afresh, but a failure never makes health better.
    connections::health_prober restarted{*store_, credentials_, *transport_,
                                         net::egress_policy{.allow = {net::cidr::parse("127.0.0.0/8").value()}}, dns_, clock_};
    c = must(restarted.test(ctx_, id));
    EXPECT_EQ(c.data().health, health_status::unhealthy);
    status_ = 200;
    c = must(prober_.test(ctx_, id));
    EXPECT_EQ(c.status(), connection_status::active);
    EXPECT_EQ(c.data().health, health_status::healthy);
}

// The seed's IntegrationFailure records a failed health probe: a working connection that fails
// has one open failure (each further failed probe an attempt of it) until a probe passes.
TEST_F(health_prober_test, a_working_connection_that_fails_its_probes_has_one_open_failure_until_one_passes) {
    auto id = pending_connection();
    must(prober_.test(ctx_, id));
    auto failures_of = [&](std::string const& connection) {
        return must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) {
                        return uow.failures().list({.connection_id = connection}, {});
                    }))
            .items;
    };
    EXPECT_TRUE(failures_of(id).empty()) << "a passing probe records nothing";
    status_ = 503;
    auto probed_at = clock_.now();
    must(prober_.test(ctx_, id));
    clock_.advance(1s);
    must(prober_.test(ctx_, id));
    auto open = failures_of(id);
    ASSERT_EQ(open.size(), 1u);
    auto const& f = open[0].data();
    EXPECT_EQ(f.source, failures::failure_source::health_probe);
    EXPECT_EQ(f.connection_id, id);
    EXPECT_EQ(f.provider_id, provider_id_);
    EXPECT_EQ(f.category, failures::failure_category::transient);
    EXPECT_EQ(f.error_code, "health_check_failed");
    EXPECT_NE(f.message.find("got 503"), std::string::npos) << f.message;
    EXPECT_EQ(f.attempt, 2);
    EXPECT_EQ(f.next_action, failures::next_action::retry);
    EXPECT_EQ(f.next_attempt_at, truncate_ms(probed_at + 1s + 300s)) << "retried by the next periodic probe";
    EXPECT_FALSE(f.resolved_at);
    status_ = 200;
    must(prober_.test(ctx_, id));
    open = failures_of(id);
    ASSERT_EQ(open.size(), 1u);
    EXPECT_TRUE(open[0].resolved());
    EXPECT_EQ(event_types().back(), "IntegrationFailureResolved");
    status_ = 500;
    must(prober_.test(ctx_, id));
    EXPECT_EQ(failures_of(id).size(), 2u) << "a new outage is a new failure";
    EXPECT_TRUE(failures_of(pending_connection()).empty());
}

// What another probe cannot mend (the vendor refusing the credential) goes to a human once, with
// its EscalationRecord; the probes after it only add attempts.
TEST_F(health_prober_test, a_probe_the_vendor_refuses_escalates_the_connections_failure_once) {
    auto id = pending_connection();
    must(prober_.test(ctx_, id));
    status_ = 503;
    must(prober_.test(ctx_, id));
    status_ = 401;
    must(prober_.test(ctx_, id));
    must(prober_.test(ctx_, id));
    auto open = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) {
                         return uow.failures().list({.unresolved_only = true, .connection_id = id}, {});
                     })).items;
    ASSERT_EQ(open.size(), 1u);
    auto const& f = open[0].data();
    EXPECT_EQ(f.attempt, 3);
    EXPECT_EQ(f.category, failures::failure_category::auth);
    EXPECT_EQ(f.error_code, "health_check_refused");
    EXPECT_EQ(f.next_action, failures::next_action::escalate);
    EXPECT_FALSE(f.next_attempt_at);
    ASSERT_EQ(f.escalations.size(), 1u);
    EXPECT_EQ(f.escalations[0].escalated_by, "health-prober");
    auto types = event_types();
    EXPECT_EQ(std::count(types.begin(), types.end(), "IntegrationFailureEscalated"), 1);
    // Escalated, it stays with a human: a transient failure after it does not put it back to Retry.
    status_ = 503;
    must(prober_.test(ctx_, id));
    auto after = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) {
        return uow.failures().find(open[0].id());
    }));
    EXPECT_EQ(after.data().attempt, 4);
    EXPECT_EQ(after.data().next_action, failures::next_action::escalate);
    EXPECT_EQ(after.data().escalations.size(), 1u);
}

// The failure of a connection that still fails its probes is not resolved by hand; retiring the
// connection (it is probed no more) ends it as dead-lettered.
TEST_F(health_prober_test, a_connections_failure_is_resolved_only_by_a_passing_probe_or_its_retirement) {
    auto id = pending_connection();
    must(prober_.test(ctx_, id));
    status_ = 503;
    must(prober_.test(ctx_, id));
    auto failure_id = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) {
                           return uow.failures().list({.unresolved_only = true, .connection_id = id}, {});
                       })).items.at(0).id();
    failures::failure_service failures(*store_, clock_);
    auto early = failures.resolve(ctx_, failure_id, failures::source_outcome::succeeded);
    ASSERT_FALSE(early);
    EXPECT_EQ(early.error(), errc::invalid_state);
    EXPECT_NE(early.error().detail().find("still Degraded"), std::string::npos) << early.error().detail();
    connections::connection_service connections(*store_, clock_, net::egress_policy{});
    must(connections.retire(ctx_, id, "moved to another vendor"));
    auto ended = must(failures.find(ctx_, failure_id));
    EXPECT_TRUE(ended.resolved());
    EXPECT_EQ(event_types().back(), "IntegrationFailureResolved");
}

TEST_F(health_prober_test, the_sweep_probes_only_connections_that_are_due) {
    auto a = pending_connection();
    auto b = pending_connection();
    must(prober_.test(ctx_, a));
    must(prober_.test(ctx_, b));
    auto before = server_.requests().size();
    EXPECT_EQ(must(prober_.sweep(stop_)), 0u);  // both were just checked
    clock_.advance(301s);
    EXPECT_EQ(must(prober_.sweep(stop_)), 2u);
    EXPECT_EQ(server_.requests().size(), before + 2);
    auto pending = pending_connection();  // Pending connections wait for their explicit test
    clock_.advance(301s);
    EXPECT_EQ(must(prober_.sweep(stop_)), 2u);
    (void)pending;
}

// A probe that passes while its credential is revoked (the revocation made the connection
// Unhealthy) does not bring the connection back to Active, nor activate a Pending one.
TEST_F(health_prober_test, a_probe_passing_while_its_credential_is_revoked_leaves_the_connection_unhealthy) {
    auto working = pending_connection();
    ASSERT_EQ(must(prober_.test(ctx_, working)).status(), connection_status::active);
    auto waiting = pending_connection();
    std::atomic<bool> fired{false};
    on_probe_ = [&] {
        if (!fired.exchange(true)) must(credentials_.revoke(ctx_, credential_id_, "leaked"));
    };
    auto c = must(prober_.test(ctx_, working));
    EXPECT_EQ(c.status(), connection_status::degraded);
    EXPECT_EQ(c.data().health, health_status::unhealthy);
    EXPECT_NE(c.data().health_reason.value_or("").find("Revoked"), std::string::npos) << c.data().health_reason.value_or("");
    auto p = must(prober_.test(ctx_, waiting));
    EXPECT_EQ(p.status(), connection_status::pending);
    auto types = event_types();
    EXPECT_EQ(std::count(types.begin(), types.end(), "IntegrationConnectionEstablished"), 1) << "only the first test activated";
}

// A wall clock stepped back (NTP, a restored VM) leaves every connection checked "in the
// future": probed at the next sweep, not once the clock has caught up with the step.
TEST_F(health_prober_test, a_clock_stepped_back_does_not_hold_the_probes_for_the_step) {
    must(prober_.test(ctx_, pending_connection()));
    auto before = server_.requests().size();
    clock_.advance(-1h);
    EXPECT_EQ(must(prober_.sweep(stop_)), 1u);
    EXPECT_EQ(server_.requests().size(), before + 1);
}

// A row of one tenant that cannot be read stops no other tenant's probes.
TEST_F(health_prober_test, one_tenants_unreadable_connection_does_not_stop_the_others_probes) {
    auto ours = pending_connection();
    must(prober_.test(ctx_, ours));
    auto first = request_context::for_tenant("t0");  // swept before t1
    must(store_->transact(first, [&](storage::unit_of_work& uow) -> result<void> {
        auto p = must(providers::integration_provider::register_new(first, clock_.now(), provider_spec("vendor")));
        must(p.activate(1));
        must(uow.providers().save(p));
        auto spec = connection_spec();
        spec.endpoints.clear();
        auto c = must(connections::integration_connection::create(first, clock_.now(), p, spec));
        return uow.connections().save(c);
    }));
    exec_sql(dir_.file("i.db"),
             "PRAGMA busy_timeout = 10000; UPDATE connections SET status = 'Active', health = 'Bogus' WHERE tenant_id = 't0';");
    auto before = server_.requests().size();
    clock_.advance(301s);
    auto swept = prober_.sweep(stop_);
    EXPECT_FALSE(swept) << "the unreadable row was not reported";
    EXPECT_EQ(server_.requests().size(), before + 1) << "t1's due connection was not probed";
}

// Tenants take turns, a connection each: a tenant with many connections to a slow vendor does
// not hold another tenant's probe until all of its own are done.
TEST_F(health_prober_test, tenants_take_turns_in_a_sweep) {
    std::mutex m;
    std::vector<std::string> order;
    loopback_server slow([&](int fd, loopback_server&) {
        {
            std::lock_guard lock(m);
            order.push_back("a0");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        std::string r = "HTTP/1.1 200 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        (void)::write(fd, r.data(), r.size());
    });
    auto first = request_context::for_tenant("a0");  // swept before t1
    std::string slow_provider;
    must(store_->transact(first, [&](storage::unit_of_work& uow) -> result<void> {
        auto spec = provider_spec("vendor");
        spec.base_url = "http://api.vendor.test:" + std::to_string(slow.port());
        auto p = must(providers::integration_provider::register_new(first, clock_.now(), spec));
        must(p.activate(1));
        slow_provider = p.id();
        return uow.providers().save(p);
    }));
    auto key = must(credentials_.create(first, {.provider_id = slow_provider, .secret = secret_bytes("k"),
                                                .api_key = credentials::api_key_placement{.name = "X-Api-Key"}}));
    must(store_->transact(first, [&](storage::unit_of_work& uow) -> result<void> {
        auto p = must(uow.providers().find(slow_provider));
        for (int i = 0; i < 3; ++i) {
            auto cs = connection_spec();
            cs.endpoints.clear();
            cs.credential_id = key.id();
            auto c = must(connections::integration_connection::create(first, clock_.now(), p, cs));
            if (auto s = uow.connections().save(c); !s) return s;
        }
        return {};
    }));
    exec_sql(dir_.file("i.db"),
             "PRAGMA busy_timeout = 10000; UPDATE connections SET status = 'Active', health = 'Healthy' WHERE tenant_id = 'a0';");
    must(prober_.test(ctx_, pending_connection()));
    on_probe_ = [&] {
        std::lock_guard lock(m);
        order.push_back("t1");
    };
    clock_.advance(301s);
    EXPECT_EQ(must(prober_.sweep(stop_)), 4u);
    std::lock_guard lock(m);
    ASSERT_EQ(order.size(), 4u);
    EXPECT_EQ(order[1], "t1") << "t1's probe waited for every one of a0's";
}

// A probe may take its whole timeout: a sweep that went on to every connection due would hold
// the platform's stop (and its destructor) for as many timeouts.
TEST_F(health_prober_test, a_sweep_probes_no_further_connection_once_stop_is_set) {
    for (int i = 0; i < 3; ++i) must(prober_.test(ctx_, pending_connection()));
    auto before = server_.requests().size();
    clock_.advance(301s);
    stop_on_probe_ = true;  // the stop comes while the sweep's first probe waits for its answer
    EXPECT_EQ(must(prober_.sweep(stop_)), 1u);
    EXPECT_EQ(server_.requests().size(), before + 1) << "connections were probed after the stop";
}

TEST_F(health_prober_test, retired_and_foreign_connections_are_not_probed) {
    auto id = pending_connection();
    EXPECT_EQ(prober_.test(request_context::for_tenant("t2"), id).error(), errc::not_found);
    must(store_->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        auto c = must(uow.connections().find(id));
        must(c.retire("done"));
        return uow.connections().save(c);
    }));
    EXPECT_EQ(prober_.test(ctx_, id).error(), errc::invalid_state);
    EXPECT_TRUE(server_.requests().empty());
}

}  // namespace
}  // namespace integration::testing
