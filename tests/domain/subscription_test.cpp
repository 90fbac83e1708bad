#include <integration/domain/subscription.hpp>

#include <integration/domain/event.hpp>

#include "domain/fixtures.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

using namespace integration;
using namespace integration::webhooks;
using fixtures::snap;
using fixtures::tenant_ctx;

constexpr std::string_view subscribed_event = events::event_type::webhook_subscribed;
constexpr std::string_view deactivated_event = events::event_type::webhook_subscription_deactivated;

std::string const signing_ref = "vault://local/t1/whsec?version=1";

class subscription_test : public testing::Test {
protected:
    manual_clock clock;

    subscription_spec spec(std::string url = "https://hooks.customer.example/integration",
                           std::string event_type = "order.*") {
        return {.project_id = "proj-1",
                .event_type = std::move(event_type),
                .endpoint_url = std::move(url),
                .signing_secret_ref = signing_ref};
    }
    result<webhook_subscription> create(subscription_spec s) {
        return webhook_subscription::create(tenant_ctx(), clock.now(), std::move(s));
    }
};

// ---- creation -------------------------------------------------------------------------------

TEST_F(subscription_test, create_makes_an_active_subscription_and_raises_subscribed) {
    auto s = create(spec()).value();
    EXPECT_TRUE(is_valid_id(s.id(), id_prefix::subscription)) << s.id();
    EXPECT_TRUE(s.active());
    EXPECT_EQ(s.meta().tenant_id, "t1");
    EXPECT_EQ(s.data().signing_secret_ref, signing_ref);

    ASSERT_EQ(s.pending_events().size(), 1u);
    auto const& e = s.pending_events()[0];
    EXPECT_EQ(e.event_type, subscribed_event);
    EXPECT_EQ(e.data.at("subscriptionId").as_string(), s.id());
    EXPECT_EQ(e.data.at("projectId").as_string(), "proj-1");
    EXPECT_EQ(e.data.at("eventType").as_string(), "order.*");
    EXPECT_EQ(e.data.at("endpointUrl").as_string(), "https://hooks.customer.example/integration");

    // Other subscribers of the tenant hear the event: not the key a receiver's URL may carry.
    auto keyed = create(spec("https://fn.azurewebsites.net/api/hook?code=FUNCKEY123&x=1")).value();
    EXPECT_EQ(keyed.pending_events()[0].data.at("endpointUrl").as_string(), "https://fn.azurewebsites.net/api/hook");
    EXPECT_EQ(keyed.data().endpoint_url, "https://fn.azurewebsites.net/api/hook?code=FUNCKEY123&x=1") << "deliveries use it whole";
}

// ---- endpointUrl: an absolute http(s) URL; the egress policy is the subscribing service's check --

TEST_F(subscription_test, an_absolute_http_or_https_endpoint_is_accepted) {
    for (std::string url : {"https://hooks.customer.example/integration", "https://93.184.216.34/hook",
                            "https://hooks.customer.example:8443/a?b=c", "http://127.0.0.1:8080/hook"}) {
        auto r = create(spec(url));
        EXPECT_TRUE(r) << url << ": " << r.error().message();
    }
}

TEST_F(subscription_test, other_schemes_and_userinfo_are_refused) {
    EXPECT_FALSE(create(spec("ftp://hooks.customer.example/x")));
    EXPECT_FALSE(create(spec("https://user:pass@hooks.customer.example/x")));
    EXPECT_FALSE(create(spec("hooks.customer.example/x")));
    EXPECT_FALSE(create(spec("https://hooks.customer.example/x\r\nHost: evil")));
}

// ---- "A signingSecretRef is required" -------------------------------------------------------

TEST_F(subscription_test, a_signing_secret_ref_is_required) {
    auto s = spec();
    s.signing_secret_ref = "";
    auto r = create(s);
    EXPECT_ERRC(r, errc::invariant_violation);
    EXPECT_NE(r.error().detail().find("signingSecretRef"), std::string::npos) << r.error().detail();
}

TEST_F(subscription_test, the_signing_secret_ref_must_be_a_reference_not_the_secret) {
    auto s = spec();
    s.signing_secret_ref = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    auto r = create(s);
    EXPECT_ERRC(r, errc::invalid_argument);
    EXPECT_NE(r.error().detail().find("signingSecretRef"), std::string::npos) << r.error().detail();
}

TEST_F(subscription_test, create_validates_project_pattern_and_attempt_policy) {
    auto no_project = spec();
    no_project.project_id = "";
    EXPECT_ERRC(create(no_project), errc::invalid_argument);

    for (std::string pattern : {"", "order*", "*.created", "order.*.v2", "**", "order created", ".*"})
        EXPECT_ERRC(create(spec("https://hooks.customer.example/x", pattern)), errc::invalid_argument);
    for (std::string pattern : {"order.created", "order.*", "*", "billing:invoice.paid"})
        EXPECT_TRUE(create(spec("https://hooks.customer.example/x", pattern))) << pattern;

    for (auto policy : {subscription_attempt_policy{.max_attempts = 0}, subscription_attempt_policy{.max_attempts = 51},
                        subscription_attempt_policy{.initial_delay_ms = 0},
                        subscription_attempt_policy{.initial_delay_ms = 10, .max_delay_ms = 5},
                        subscription_attempt_policy{.timeout_ms = 120'001}}) {
        auto s = spec();
        s.attempt_policy = policy;
        EXPECT_ERRC(create(s), errc::invalid_argument);
    }
    auto custom = spec();
    custom.attempt_policy = subscription_attempt_policy{.max_attempts = 3, .timeout_ms = 2'000};
    auto sub = create(custom).value();
    EXPECT_EQ(sub.attempt_policy().max_attempts, 3);
    EXPECT_EQ(sub.attempt_policy().timeout_ms, 2'000);
    EXPECT_EQ(create(spec()).value().attempt_policy().max_attempts, subscription_attempt_policy{}.max_attempts);
}

// ---- event type patterns --------------------------------------------------------------------

TEST(event_type_matches_test, exact_names_match_only_themselves) {
    EXPECT_TRUE(event_type_matches("order.created", "order.created"));
    EXPECT_FALSE(event_type_matches("order.created", "order.updated"));
    EXPECT_FALSE(event_type_matches("order.created", "order.created.v2"));
    EXPECT_FALSE(event_type_matches("order.created", "Order.Created"));
}

TEST(event_type_matches_test, prefix_patterns_match_names_below_the_prefix) {
    EXPECT_TRUE(event_type_matches("order.*", "order.created"));
    EXPECT_TRUE(event_type_matches("order.*", "order.line.added"));
    EXPECT_FALSE(event_type_matches("order.*", "order"));
    EXPECT_FALSE(event_type_matches("order.*", "order."));
    EXPECT_FALSE(event_type_matches("order.*", "orders.created"));
    EXPECT_FALSE(event_type_matches("order.*", "invoice.order.created"));
}

TEST(event_type_matches_test, star_matches_everything) {
    EXPECT_TRUE(event_type_matches("*", "order.created"));
    EXPECT_TRUE(event_type_matches("*", "x"));
}

// ---- active → inactive ----------------------------------------------------------------------

TEST_F(subscription_test, active_to_inactive_raises_deactivated) {
    auto s = create(spec()).value();
    ASSERT_TRUE(s.deactivate("endpoint gone"));
    EXPECT_FALSE(s.active());
    ASSERT_EQ(s.pending_events().size(), 2u);
    auto const& e = s.pending_events().back();
    EXPECT_EQ(e.event_type, deactivated_event);
    EXPECT_EQ(e.data.at("subscriptionId").as_string(), s.id());
    EXPECT_EQ(e.data.at("reason").as_string(), "endpoint gone");
}

TEST_F(subscription_test, inactive_cannot_be_deactivated_again) {
    auto s = create(spec()).value();
    s.deactivate("endpoint gone").value();
    auto before = snap(s);
    EXPECT_ERRC(s.deactivate("again"), errc::invalid_state);
    EXPECT_UNCHANGED(s, before);
}

// ---- "Inactive subscriptions are skipped" ---------------------------------------------------

TEST_F(subscription_test, accepts_matching_events_only_while_active) {
    auto s = create(spec()).value();
    EXPECT_TRUE(s.accepts("order.created"));
    EXPECT_FALSE(s.accepts("invoice.paid"));
    s.deactivate("paused").value();
    EXPECT_FALSE(s.accepts("order.created"));
}

TEST_F(subscription_test, restore_refuses_an_id_without_the_subscription_prefix) {
    auto s = create(spec()).value();
    auto d = s.data();
    d.subscription_id = new_id(id_prefix::delivery, clock.now());
    EXPECT_ERRC(webhook_subscription::restore(s.meta(), d), errc::invalid_argument);
}

}  // namespace
