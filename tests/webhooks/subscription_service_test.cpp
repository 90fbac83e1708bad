#include <integration/services/subscription_service.hpp>

#include <integration/backends/local_vault/local_secret_store.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>
#include <integration/core/json.hpp>
#include <integration/domain/delivery.hpp>
#include <integration/domain/event.hpp>
#include <integration/outbound/egress_policy.hpp>

#include "storage/fixtures.hpp"
#include "support/base64.hpp"
#include "support/loopback_server.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>

// The subscription service over a real SQLite file and a real local vault, with a manual clock.
// Subscribing sends nothing, so the SSRF cases need no listener: the refusals are asserted, and
// that nothing was stored.

namespace {

using namespace integration;
using namespace integration::webhooks;
using namespace std::chrono_literals;
using integration::testing::must;
namespace support = integration::testing;

std::string slurp(std::string const& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

net::ip_address ip(std::string_view text) { return net::ip_address::parse(text).value(); }

class subscription_service_test : public ::testing::Test {
protected:
    subscription_service_test() {
        dns_.add("hooks.customer.example", {ip("93.184.216.34")});
        dns_.add("loopback.customer.example", {ip("127.0.0.1")});
        dns_.add("metadata.customer.example", {ip("169.254.169.254")});
        dns_.add("private.customer.example", {ip("10.1.2.3")});
        dns_.add("mapped.customer.example", {ip("::ffff:127.0.0.1")});
        dns_.add("mixed.customer.example", {ip("93.184.216.34"), ip("192.168.1.1")});
        dns_.add("v6.customer.example", {ip("2606:2800:220:1:248:1893:25c8:1946")});
        dns_.add("ula.customer.example", {ip("fd00::1")});
    }

    subscription_spec spec(std::string url = "https://hooks.customer.example/in") {
        return {.project_id = "shop", .event_type = "order.*", .endpoint_url = std::move(url)};
    }

    std::string haystack() {
        std::string all = slurp(dir_.file("i.db")) + slurp(dir_.file("i.db-wal"));
        for (auto const& e : must(store_->pending_events(10'000))) all += boost::json::serialize(to_json(e.envelope));
        return all;
    }

    std::vector<std::string> outbox_types() {
        std::vector<std::string> out;
        for (auto const& e : must(store_->pending_events(10'000))) out.push_back(e.envelope.event_type);
        return out;
    }

    std::size_t stored_subscriptions(request_context const& ctx) {
        return must(service_.list(ctx, {.limit = 500})).items.size();
    }

    support::temp_dir dir_;
    manual_clock clock_;
    std::unique_ptr<storage::store> store_ =
        must(storage::open_sqlite_store({.path = dir_.file("i.db"), .clock = &clock_}));
    std::unique_ptr<credentials::local_secret_store> vault_ = must(credentials::open_local_secret_store(
        {.path = dir_.file("s.db"), .key_file = dir_.file("k"), .key_env = "", .clock = &clock_}));
    net::static_resolver dns_;
    subscription_service service_{*store_, *vault_, http::egress_hop_check({}, dns_), clock_};
    request_context ctx_ = request_context::for_tenant("t1", "alice");
    request_context other_ = request_context::for_tenant("t2", "mallory");
};

// ---- subscribe ---------------------------------------------------------------------------------

TEST_F(subscription_service_test, subscribe_generates_a_whsec_secret_into_the_secret_store_and_returns_it_once) {
    auto s = must(service_.subscribe(ctx_, spec()));
    ASSERT_TRUE(s.signing_secret);
    std::string const secret(s.signing_secret->view());
    ASSERT_EQ(secret.rfind("whsec_", 0), 0u);
    EXPECT_EQ(secret.size(), 6u + 44u);  // base64 of 32 bytes
    EXPECT_TRUE(s.subscription.active());

    auto ref = must(credentials::secret_ref::parse(s.subscription.data().signing_secret_ref));
    EXPECT_EQ(ref.tenant, "t1");
    EXPECT_EQ(must(vault_->get("t1", ref)).view(), secret);

    auto found = must(service_.find(ctx_, s.subscription.id()));
    EXPECT_EQ(found.data().signing_secret_ref, s.subscription.data().signing_secret_ref);
    EXPECT_EQ(outbox_types(), std::vector<std::string>{std::string(events::event_type::webhook_subscribed)});

    auto all = haystack();
    EXPECT_NE(all.find(s.subscription.id()), std::string::npos) << "the search looks at the right files";
    EXPECT_EQ(all.find(secret), std::string::npos) << "the secret reached the database or an event";
    EXPECT_EQ(all.find(secret.substr(6)), std::string::npos) << "the secret's key reached the database";
    EXPECT_EQ(all.find(boost::json::serialize(boost::json::string(secret.substr(6)))), std::string::npos);

    // Each subscription gets its own secret.
    auto t = must(service_.subscribe(ctx_, spec()));
    EXPECT_FALSE(*t.signing_secret == *s.signing_secret);
    EXPECT_NE(t.subscription.data().signing_secret_ref, s.subscription.data().signing_secret_ref);
}

TEST_F(subscription_service_test, a_given_signing_secret_ref_must_be_the_tenants_own_signing_key) {
    auto mine = must(vault_->put("t1", "my-whsec", secret_bytes("whsec_" + support::base64(std::string(32, 'm')))));
    auto s = spec();
    s.signing_secret_ref = mine.uri();
    auto sub = must(service_.subscribe(ctx_, s));
    EXPECT_FALSE(sub.signing_secret) << "a caller's own secret is never echoed";
    EXPECT_EQ(sub.subscription.data().signing_secret_ref, mine.uri());

    // Another tenant's secret, addressed by its ref: not found in the caller's namespace.
    auto theirs = must(vault_->put("t2", "their-whsec", secret_bytes("whsec_" + support::base64(std::string(32, 't')))));
    s.signing_secret_ref = theirs.uri();
    auto r = service_.subscribe(ctx_, s);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::invalid_argument);
    EXPECT_NE(r.error().detail().find("signingSecretRef"), std::string::npos) << r.error().detail();

    // A secret that is not a signing key.
    auto password = must(vault_->put("t1", "password", secret_bytes("hunter2-canary")));
    s.signing_secret_ref = password.uri();
    r = service_.subscribe(ctx_, s);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::invalid_argument);
    EXPECT_EQ(r.error().message().find("hunter2"), std::string::npos) << r.error().message();

    // A credential's secret (stored under the name the credential service gives it), even one
    // that has the form of a signing key: it goes to its vendor only.
    auto api_key = must(vault_->put("t1", new_id("secret", clock_.now()), secret_bytes("whsec_" + support::base64(std::string(32, 'k')))));
    s.signing_secret_ref = api_key.uri();
    r = service_.subscribe(ctx_, s);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::invalid_argument);
    EXPECT_NE(r.error().detail().find("credential's secret"), std::string::npos) << r.error().detail();
    EXPECT_EQ(stored_subscriptions(ctx_), 1u);
}

TEST_F(subscription_service_test, a_malformed_filter_is_refused_naming_its_position_and_nothing_is_stored) {
    auto s = spec();
    s.filter = boost::json::parse(R"({"or": [{"exists": {"path": "$.a"}}, {"in": {"path": "$.b", "values": []}}]})");
    auto r = service_.subscribe(ctx_, s);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::invalid_argument);
    EXPECT_EQ(r.error().detail().rfind("filter.or[1].in.values: ", 0), 0u) << r.error().detail();
    EXPECT_EQ(stored_subscriptions(ctx_), 0u);
    EXPECT_TRUE(outbox_types().empty());

    s.filter = boost::json::parse(R"({"equals": {"path": "$.order.status", "value": "paid"}})");
    auto ok = must(service_.subscribe(ctx_, s));
    EXPECT_EQ(must(service_.find(ctx_, ok.subscription.id())).data().filter, s.filter);
}

// ---- SSRF: endpointUrl must be https and pass the egress policy ------------------------------------

TEST_F(subscription_service_test, endpoints_that_resolve_or_point_to_internal_addresses_are_refused) {
    for (std::string url : {
             "https://loopback.customer.example/hook",   // name -> 127.0.0.1
             "https://metadata.customer.example/latest",  // name -> 169.254.169.254
             "https://private.customer.example/hook",    // name -> 10.1.2.3
             "https://mapped.customer.example/hook",     // name -> ::ffff:127.0.0.1
             "https://mixed.customer.example/hook",      // one answer public, one private
             "https://ula.customer.example/hook",        // name -> fd00::1
             "https://127.0.0.1/hook", "https://127.1/hook", "https://2130706433/hook", "https://0x7f000001/hook",
             "https://0177.0.0.1/hook", "https://0251.254.169.254/latest", "https://[::ffff:127.0.0.1]/hook",
             "https://[::ffff:7f00:1]/hook", "https://[0:0:0:0:0:0:0:1]/hook", "https://[::]/hook", "https://0/hook",
             "https://169.254.169.254/latest/meta-data/", "https://localhost/hook", "https://LOCALHOST./hook",
             "https://127.0.0.1#@hooks.customer.example/", "https://unknown.customer.example/hook"}) {
        auto r = service_.subscribe(ctx_, spec(url));
        ASSERT_FALSE(r) << url;
        EXPECT_TRUE(r.error() == errc::egress_denied || r.error() == errc::invalid_argument || r.error() == errc::not_found ||
                    r.error() == errc::unavailable)
            << url << ": " << r.error().message();
        EXPECT_NE(r.error().detail().find("endpointUrl"), std::string::npos) << url << ": " << r.error().detail();
        // A refusal for a name never says which address it resolved to.
        EXPECT_EQ(r.error().detail().find("10.1.2.3"), std::string::npos) << r.error().detail();
    }
    for (auto url : {"https://loopback.customer.example/hook", "https://metadata.customer.example/latest",
                     "https://private.customer.example/hook", "https://mapped.customer.example/hook"})
        EXPECT_EQ(service_.subscribe(ctx_, spec(url)).error(), errc::egress_denied) << url;
    EXPECT_EQ(stored_subscriptions(ctx_), 0u);
    EXPECT_TRUE(outbox_types().empty());
}

TEST_F(subscription_service_test, a_listener_standing_in_for_a_refused_endpoint_is_never_contacted) {
    support::loopback_server listener;
    auto const port = ":" + std::to_string(listener.port());
    for (auto const& url : {"https://loopback.customer.example" + port + "/hook", "https://mapped.customer.example" + port + "/hook",
                            "http://loopback.customer.example" + port + "/hook", "http://127.0.0.1" + port + "/hook",
                            "https://[::ffff:127.0.0.1]" + port + "/hook"})
        EXPECT_EQ(service_.subscribe(ctx_, spec(url)).error(), errc::egress_denied) << url;
    EXPECT_EQ(listener.accepted(), 0);
    EXPECT_TRUE(listener.requests().empty());
}

TEST_F(subscription_service_test, other_schemes_userinfo_and_plain_http_without_an_allow_list_are_refused) {
    for (std::string url : {"http://hooks.customer.example/in", "http://93.184.216.34/in", "http://127.0.0.1:8080/in",
                            "file:///etc/passwd", "gopher://hooks.customer.example/", "ftp://hooks.customer.example/",
                            "https://evil.example@127.0.0.1/", "https://user:pw@hooks.customer.example/in",
                            "hooks.customer.example/in", "https:///in"}) {
        auto r = service_.subscribe(ctx_, spec(url));
        ASSERT_FALSE(r) << url;
        EXPECT_TRUE(r.error() == errc::egress_denied || r.error() == errc::invalid_argument) << url;
    }
    EXPECT_EQ(service_.subscribe(ctx_, spec("http://hooks.customer.example/in")).error(), errc::egress_denied);
    EXPECT_EQ(stored_subscriptions(ctx_), 0u);
}

TEST_F(subscription_service_test, public_https_endpoints_and_allow_listed_http_are_accepted) {
    EXPECT_TRUE(service_.subscribe(ctx_, spec("https://hooks.customer.example/in?tag=1")));
    EXPECT_TRUE(service_.subscribe(ctx_, spec("https://HOOKS.customer.example./in")));
    EXPECT_TRUE(service_.subscribe(ctx_, spec("https://v6.customer.example:8443/in")));
    EXPECT_TRUE(service_.subscribe(ctx_, spec("https://93.184.216.34/in")));

    // An operator allow-list lets http reach that address, by literal or by a name resolving to it,
    // and nothing else.
    net::egress_policy local{.allow = {net::cidr::parse("127.0.0.1/32").value()}};
    subscription_service dev(*store_, *vault_, http::egress_hop_check(local, dns_), clock_);
    EXPECT_TRUE(dev.subscribe(ctx_, spec("http://127.0.0.1:8080/in")));
    EXPECT_TRUE(dev.subscribe(ctx_, spec("http://loopback.customer.example:8080/in")));
    EXPECT_EQ(dev.subscribe(ctx_, spec("http://hooks.customer.example/in")).error(), errc::egress_denied);
    EXPECT_EQ(dev.subscribe(ctx_, spec("http://127.0.0.2:8080/in")).error(), errc::egress_denied);
    EXPECT_EQ(dev.subscribe(ctx_, spec("https://private.customer.example/in")).error(), errc::egress_denied);
    EXPECT_EQ(stored_subscriptions(ctx_), 6u);
}

TEST_F(subscription_service_test, without_an_egress_check_nothing_is_subscribed) {
    subscription_service unchecked(*store_, *vault_, http::hop_check{}, clock_);
    EXPECT_EQ(unchecked.subscribe(ctx_, spec()).error(), errc::egress_denied);
}

// ---- tenant scoping ---------------------------------------------------------------------------

TEST_F(subscription_service_test, another_tenant_sees_nothing_and_changes_nothing) {
    auto s = must(service_.subscribe(ctx_, spec())).subscription;
    auto const id = s.id();
    EXPECT_EQ(service_.find(other_, id).error(), errc::not_found);
    EXPECT_EQ(service_.deactivate(other_, id).error(), errc::not_found);
    EXPECT_EQ(service_.reactivate(other_, id).error(), errc::not_found);
    EXPECT_EQ(service_.rotate_secret(other_, id).error(), errc::not_found);
    EXPECT_EQ(service_.recover(other_, id, clock_.now() - 1h).error(), errc::not_found);
    EXPECT_TRUE(must(service_.list(other_, {})).items.empty());
    auto still = must(service_.find(ctx_, id));
    EXPECT_TRUE(still.active());
    EXPECT_EQ(still.data().signing_secret_ref, s.data().signing_secret_ref);
    EXPECT_EQ(service_.find(ctx_, "sub-does-not-exist").error(), errc::not_found);
}

// ---- deactivate, reactivate, rotate ---------------------------------------------------------------

TEST_F(subscription_service_test, deactivate_and_reactivate_go_through_the_outbox) {
    auto id = must(service_.subscribe(ctx_, spec())).subscription.id();
    auto off = must(service_.deactivate(ctx_, id, "endpoint under maintenance"));
    EXPECT_FALSE(off.active());
    EXPECT_EQ(must(service_.find(ctx_, id)).data().deactivation_reason, "endpoint under maintenance");
    EXPECT_EQ(service_.deactivate(ctx_, id).error(), errc::invalid_state);
    auto on = must(service_.reactivate(ctx_, id));
    EXPECT_TRUE(on.active());
    EXPECT_EQ(service_.reactivate(ctx_, id).error(), errc::invalid_state);
    EXPECT_EQ(outbox_types(), (std::vector<std::string>{std::string(events::event_type::webhook_subscribed),
                                                        std::string(events::event_type::webhook_subscription_deactivated),
                                                        std::string(events::event_type::webhook_subscription_reactivated)}));
}

TEST_F(subscription_service_test, rotate_secret_signs_with_both_secrets_for_the_overlap) {
    auto first = must(service_.subscribe(ctx_, spec()));
    auto const id = first.subscription.id();
    auto const old_ref = first.subscription.data().signing_secret_ref;
    clock_.advance(1h);
    auto r = must(service_.rotate_secret(ctx_, id));
    std::string const fresh(r.signing_secret.view());
    ASSERT_EQ(fresh.rfind("whsec_", 0), 0u);
    EXPECT_FALSE(r.signing_secret == *first.signing_secret);

    auto s = must(service_.find(ctx_, id));
    auto refs = s.signing_secret_refs(clock_.now());
    ASSERT_EQ(refs.size(), 2u);
    EXPECT_EQ(refs[1], old_ref);
    EXPECT_EQ(must(vault_->get("t1", must(credentials::secret_ref::parse(refs[0])))).view(), fresh);
    EXPECT_EQ(must(vault_->get("t1", must(credentials::secret_ref::parse(refs[1])))).view(), first.signing_secret->view());
    clock_.advance(24h - 1ms);
    EXPECT_EQ(must(service_.find(ctx_, id)).signing_secret_refs(clock_.now()).size(), 2u);
    clock_.advance(1ms);
    EXPECT_EQ(must(service_.find(ctx_, id)).signing_secret_refs(clock_.now()), std::vector<std::string>{refs[0]});

    EXPECT_EQ(outbox_types().back(), events::event_type::webhook_signing_secret_rotated);
    auto all = haystack();
    EXPECT_EQ(all.find(fresh), std::string::npos);
    EXPECT_EQ(all.find(fresh.substr(6)), std::string::npos);
}

// Two rotations within the overlap: all three secrets sign until each one's own overlap ends.
// The next rotation after that deletes the generated secrets whose overlap ended from the secret
// store; a secret the tenant named itself (`signingSecretRef`) is left there.
TEST_F(subscription_service_test, each_replaced_secret_signs_until_its_own_end_and_then_leaves_the_secret_store) {
    auto own = must(vault_->put("t1", "my-own-secret", secret_bytes(std::string_view("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))));
    auto with_own = spec();
    with_own.signing_secret_ref = own.uri();
    auto const id = must(service_.subscribe(ctx_, with_own)).subscription.id();
    auto second = must(service_.rotate_secret(ctx_, id));
    clock_.advance(1h);
    auto third = must(service_.rotate_secret(ctx_, id));
    auto refs = must(service_.find(ctx_, id)).signing_secret_refs(clock_.now());
    ASSERT_EQ(refs.size(), 3u);
    EXPECT_EQ(refs[2], own.uri());
    EXPECT_EQ(must(vault_->get("t1", must(credentials::secret_ref::parse(refs[1])))).view(), second.signing_secret.view());
    EXPECT_EQ(must(vault_->get("t1", must(credentials::secret_ref::parse(refs[0])))).view(), third.signing_secret.view());
    auto const second_ref = refs[1];

    clock_.advance(23h);  // the first rotation's overlap ends
    EXPECT_EQ(must(service_.find(ctx_, id)).signing_secret_refs(clock_.now()), (std::vector<std::string>{refs[0], second_ref}));
    clock_.advance(1h);  // and the second's
    EXPECT_EQ(must(service_.find(ctx_, id)).signing_secret_refs(clock_.now()), std::vector<std::string>{refs[0]});
    must(service_.rotate_secret(ctx_, id));
    EXPECT_EQ(vault_->get("t1", must(credentials::secret_ref::parse(second_ref))).error(), errc::not_found)
        << "a generated secret that signs nothing stays in the secret store";
    EXPECT_TRUE(vault_->get("t1", own)) << "the tenant's own secret was deleted";
    EXPECT_TRUE(vault_->get("t1", must(credentials::secret_ref::parse(refs[0])))) << "the previous secret still signs";
}

// A ref is visible in every subscription, so another one may sign with it (`signingSecretRef`):
// a rotation deletes a generated secret only once no subscription of the tenant signs with it.
TEST_F(subscription_service_test, a_replaced_secret_another_subscription_signs_with_stays_in_the_secret_store) {
    auto first = must(service_.subscribe(ctx_, spec())).subscription;
    auto shared = spec();
    shared.signing_secret_ref = first.data().signing_secret_ref;
    auto second = must(service_.subscribe(ctx_, shared)).subscription;
    must(service_.rotate_secret(ctx_, first.id()));
    clock_.advance(25h);
    must(service_.rotate_secret(ctx_, first.id()));
    auto const refs = must(service_.find(ctx_, second.id())).signing_secret_refs(clock_.now());
    ASSERT_EQ(refs, std::vector<std::string>{first.data().signing_secret_ref});
    EXPECT_TRUE(vault_->get("t1", must(credentials::secret_ref::parse(refs[0])))) << "the other subscription's secret was deleted";
}

// The vault, with a hook run (once) after a `get` or before a `soft_delete` of one secret: a
// rotation's or a subscription's request run at that point of another's.
class hooked_vault final : public credentials::secret_store {
public:
    explicit hooked_vault(credentials::secret_store& inner) : inner_(inner) {}
    std::string name_of_hook;
    std::function<void()> after_get, before_delete;

    std::string const& name() const noexcept override { return inner_.name(); }
    result<credentials::secret_ref> put(std::string const& t, std::string const& n, secret_bytes const& v) override {
        return inner_.put(t, n, v);
    }
    result<secret_bytes> get(std::string const& t, credentials::secret_ref const& ref) override {
        auto got = inner_.get(t, ref);
        if (ref.name == name_of_hook && after_get) std::exchange(after_get, nullptr)();
        return got;
    }
    result<std::vector<credentials::secret_version_info>> versions(std::string const& t, std::string const& n) override {
        return inner_.versions(t, n);
    }
    result<void> disable(std::string const& t, credentials::secret_ref const& ref) override { return inner_.disable(t, ref); }
    result<void> soft_delete(std::string const& t, std::string const& n) override {
        if (n == name_of_hook && before_delete) std::exchange(before_delete, nullptr)();
        return inner_.soft_delete(t, n);
    }
    result<void> recover(std::string const& t, std::string const& n) override { return inner_.recover(t, n); }
    result<void> purge(std::string const& t, std::string const& n) override { return inner_.purge(t, n); }
    result<std::size_t> purge_expired() override { return inner_.purge_expired(); }

private:
    credentials::secret_store& inner_;
};

// A rotation that ends a generated secret scans the subscriptions in its commit and deletes the
// secret after it. A subscription naming that secret, read before the delete and saved after the
// scan, still signs with it: whichever of the two checks comes later brings it back.
class named_during_a_rotation : public subscription_service_test {
protected:
    named_during_a_rotation() {
        shared_ = must(credentials::secret_ref::parse(first_.data().signing_secret_ref));
        must(service_.rotate_secret(ctx_, first_.id()));
        clock_.advance(25h);  // the first secret's overlap has ended: the next rotation deletes it
        hooked_.name_of_hook = shared_.name;
    }
    subscription_spec naming_it() {
        auto s = spec();
        s.signing_secret_ref = first_.data().signing_secret_ref;
        return s;
    }

    hooked_vault hooked_{*vault_};
    subscription_service racing_{*store_, hooked_, http::egress_hop_check({}, dns_), clock_};
    webhook_subscription first_ = must(service_.subscribe(ctx_, spec())).subscription;
    credentials::secret_ref shared_;
};

TEST_F(named_during_a_rotation, a_delete_between_the_subscriptions_read_and_its_commit) {
    hooked_.after_get = [&] { must(racing_.rotate_secret(ctx_, first_.id())); };
    auto second = must(racing_.subscribe(ctx_, naming_it())).subscription;
    EXPECT_FALSE(hooked_.after_get) << "the rotation did not run inside the subscription's request";
    EXPECT_EQ(must(service_.find(ctx_, second.id())).signing_secret_refs(clock_.now()),
              std::vector<std::string>{first_.data().signing_secret_ref});
    EXPECT_TRUE(vault_->get("t1", shared_)) << "the secret the new subscription signs with was deleted";
}

TEST_F(named_during_a_rotation, a_delete_after_the_subscriptions_commit) {
    std::string second;
    hooked_.before_delete = [&] { second = must(racing_.subscribe(ctx_, naming_it())).subscription.id(); };
    must(racing_.rotate_secret(ctx_, first_.id()));
    ASSERT_FALSE(second.empty()) << "the rotation did not delete the ended secret";
    EXPECT_TRUE(vault_->get("t1", shared_)) << "the secret the new subscription signs with was deleted";
}

TEST_F(named_during_a_rotation, with_no_subscription_naming_it_the_secret_is_still_deleted) {
    must(racing_.rotate_secret(ctx_, first_.id()));
    EXPECT_EQ(vault_->get("t1", shared_).error(), errc::not_found);
}

TEST_F(subscription_service_test, the_overlap_is_an_option) {
    subscription_service short_overlap(*store_, *vault_, http::egress_hop_check({}, dns_), clock_,
                                       {.secret_overlap = 10min});
    auto id = must(short_overlap.subscribe(ctx_, spec())).subscription.id();
    must(short_overlap.rotate_secret(ctx_, id));
    clock_.advance(10min);
    EXPECT_EQ(must(short_overlap.find(ctx_, id)).signing_secret_refs(clock_.now()).size(), 1u);
}

// ---- recover ------------------------------------------------------------------------------------

TEST_F(subscription_service_test, recover_replays_failed_and_dead_lettered_deliveries_since_a_time) {
    auto s = spec();
    s.attempt_policy = subscription_attempt_policy{.max_attempts = 2};
    auto sub = must(service_.subscribe(ctx_, s)).subscription;
    auto other_sub = must(service_.subscribe(ctx_, spec())).subscription;

    int event = 0;
    auto delivery = [&](webhook_subscription const& to, int failures, bool delivered = false, bool payload = true) {
        auto d = must(webhook_delivery::outbound(ctx_, clock_.now(), to, "order.paid", "evt-" + std::to_string(++event),
                                                 payload ? std::optional<std::string>("webhooks/events/p") : std::nullopt));
        for (int i = 0; i < failures; ++i)
            must(d.record_failure({.http_status = 500, .attempted_at = clock_.now()}, clock_.now() + 5s));
        if (delivered) must(d.record_success({.http_status = 200, .attempted_at = clock_.now()}));
        must(store_->transact(ctx_, [&](storage::unit_of_work& uow) { return uow.deliveries().save(d); }));
        clock_.advance(1min);
        return d.id();
    };
    auto const too_old = delivery(sub, 1);  // Failed, but before `since`
    auto const since = clock_.now();
    auto const failed = delivery(sub, 1);
    auto const dead = delivery(sub, 2);
    auto const delivered = delivery(sub, 0, true);
    auto const pending = delivery(sub, 0);
    auto const elsewhere = delivery(other_sub, 1);
    auto const purged = delivery(sub, 2, false, false);  // retention purged its payload: it cannot go again

    auto replayed = must(service_.recover(ctx_, sub.id(), since));
    EXPECT_EQ(std::set<std::string>(replayed.begin(), replayed.end()), (std::set<std::string>{failed, dead}));

    auto status = [&](std::string const& id) {
        return must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.deliveries().find(id); }));
    };
    for (auto const& id : {failed, dead}) {
        auto d = status(id);
        EXPECT_EQ(d.status(), delivery_status::pending) << id;
        EXPECT_EQ(d.id(), id) << "a replay keeps its webhook-id";
        EXPECT_EQ(d.data().next_attempt_at, truncate_ms(clock_.now()));
        EXPECT_EQ(d.data().max_attempts, d.data().attempts + 2);
    }
    EXPECT_EQ(status(too_old).status(), delivery_status::failed);
    EXPECT_EQ(status(delivered).status(), delivery_status::delivered);
    EXPECT_EQ(status(pending).status(), delivery_status::pending);
    EXPECT_EQ(status(elsewhere).status(), delivery_status::failed);
    EXPECT_EQ(status(purged).status(), delivery_status::dead_lettered);

    // Nothing left to recover: an empty list, not an error.
    EXPECT_TRUE(must(service_.recover(ctx_, sub.id(), since)).empty());
}

// Recovered while its subscription is inactive, a delivery waits for the reactivation off the
// claims' order (no due time every claim would walk past), then is due at once.
TEST_F(subscription_service_test, a_recover_while_inactive_holds_the_deliveries_until_the_reactivation) {
    auto sub = must(service_.subscribe(ctx_, spec())).subscription;
    auto d = must(webhook_delivery::outbound(ctx_, clock_.now(), sub, "order.paid", "evt-held", std::string("webhooks/events/p")));
    must(d.record_failure({.http_status = 500, .attempted_at = clock_.now()}, clock_.now() + 5s));
    must(store_->transact(ctx_, [&](storage::unit_of_work& uow) { return uow.deliveries().save(d); }));
    auto since = clock_.now() - 1min;
    must(service_.deactivate(ctx_, sub.id(), "endpoint under maintenance"));
    clock_.advance(1min);
    EXPECT_EQ(must(service_.recover(ctx_, sub.id(), since)), std::vector<std::string>{d.id()});
    auto find = [&] {
        return must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.deliveries().find(d.id()); }));
    };
    EXPECT_EQ(find().status(), delivery_status::pending);
    EXPECT_FALSE(find().data().next_attempt_at) << "due while its subscription is off";
    must(service_.reactivate(ctx_, sub.id()));
    EXPECT_EQ(find().data().next_attempt_at, truncate_ms(clock_.now()));
}

// A recover during an outage meets deliveries a worker is sending: those are left to their
// attempt (replaying one took its lease away, and the next claim sent it beside the first).
TEST_F(subscription_service_test, recover_leaves_a_delivery_a_worker_is_sending_to_that_attempt) {
    auto sub = must(service_.subscribe(ctx_, spec())).subscription;
    auto const since = clock_.now();
    std::vector<std::string> ids;
    for (int i = 0; i < 2; ++i) {
        auto d = must(webhook_delivery::outbound(ctx_, clock_.now(), sub, "order.paid", "evt-" + std::to_string(i), "webhooks/events/p"));
        must(d.record_failure({.http_status = 500, .attempted_at = clock_.now()}, clock_.now() + 5s));
        must(store_->transact(ctx_, [&](storage::unit_of_work& uow) { return uow.deliveries().save(d); }));
        ids.push_back(d.id());
    }
    clock_.advance(6s);
    auto claimed = must(store_->claim_deliveries(clock_.now(), "worker-1", clock_.now() + 60s, 1));
    ASSERT_EQ(claimed.deliveries.size(), 1u);
    auto const sending = claimed.deliveries[0].delivery.id();
    auto const other = sending == ids[0] ? ids[1] : ids[0];
    EXPECT_EQ(must(service_.recover(ctx_, sub.id(), since)), std::vector<std::string>{other});
    EXPECT_TRUE(must(store_->claim_deliveries(clock_.now(), "worker-2", clock_.now() + 60s, 10)).deliveries.size() == 1u)
        << "the replayed one only: the one in flight stays worker-1's";
}

// The store has one writer: a recover of a long outage's deliveries in one transaction held every
// tenant's commits behind it. It replays a page (500) per unit of work.
TEST_F(subscription_service_test, recover_replays_a_long_outage_in_units_of_at_most_500_deliveries) {
    auto sub = must(service_.subscribe(ctx_, spec())).subscription;
    auto const since = clock_.now();
    must(store_->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        for (int i = 0; i < 1200; ++i) {
            auto d = must(webhook_delivery::outbound(ctx_, clock_.now(), sub, "order.paid", "evt-" + std::to_string(i), "webhooks/events/p"));
            must(d.record_failure({.http_status = 500, .attempted_at = clock_.now()}, clock_.now() + 5s));
            if (auto r = uow.deliveries().save(d); !r) return r;
        }
        return {};
    }));
    auto const before = storage::sqlite_store_stats(*store_).value().units;
    auto replayed = must(service_.recover(ctx_, sub.id(), since));
    EXPECT_EQ(std::set<std::string>(replayed.begin(), replayed.end()).size(), 1200u);
    EXPECT_GE(storage::sqlite_store_stats(*store_).value().units - before, 3u);
    auto still_failed = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) {
        return uow.deliveries().list({.subscription_id = sub.id(), .status = delivery_status::failed}, {.limit = 10});
    }));
    EXPECT_TRUE(still_failed.items.empty());
}

TEST_F(subscription_service_test, recover_and_reactivate_call_on_due_when_they_made_deliveries_due) {
    int woken = 0;
    subscription_service waking(*store_, *vault_, http::egress_hop_check({}, dns_), clock_, {}, [&] { ++woken; });
    auto sub = must(waking.subscribe(ctx_, spec())).subscription;
    auto d = must(webhook_delivery::outbound(ctx_, clock_.now(), sub, "order.paid", "evt-1", "webhooks/events/p"));
    must(d.record_failure({.http_status = 500, .attempted_at = clock_.now()}, clock_.now() + 5s));
    must(store_->transact(ctx_, [&](storage::unit_of_work& uow) { return uow.deliveries().save(d); }));
    EXPECT_EQ(woken, 0) << "subscribing makes nothing due";

    EXPECT_EQ(must(waking.recover(ctx_, sub.id(), clock_.now() - 1h)).size(), 1u);
    EXPECT_EQ(woken, 1) << "a recover that replayed a delivery wakes the worker";
    EXPECT_TRUE(must(waking.recover(ctx_, sub.id(), clock_.now() - 1h)).empty());
    EXPECT_EQ(woken, 1) << "a recover that replayed nothing does not";
    EXPECT_EQ(waking.recover(other_, sub.id(), clock_.now() - 1h).error(), errc::not_found);
    EXPECT_EQ(woken, 1);

    must(waking.deactivate(ctx_, sub.id()));
    EXPECT_EQ(woken, 1);
    must(waking.reactivate(ctx_, sub.id()));
    EXPECT_EQ(woken, 2) << "a reactivation makes the subscription's waiting deliveries claimable";
    EXPECT_EQ(waking.reactivate(ctx_, sub.id()).error(), errc::invalid_state);
    EXPECT_EQ(woken, 2);
}

}  // namespace
