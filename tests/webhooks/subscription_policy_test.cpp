#include <integration/domain/subscription.hpp>

#include <integration/domain/event.hpp>

#include "domain/fixtures.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <string>

// The subscription's schedule, signing secrets, reactivation and auto-disable, with a manual clock.

namespace {

using namespace integration;
using namespace integration::webhooks;
using namespace std::chrono_literals;
using fixtures::event_types;
using fixtures::snap;
using fixtures::tenant_ctx;

std::string const current_ref = "vault://local/t1/whsec-current";
std::string const next_ref = "vault://local/t1/whsec-next";

class subscription_policy_test : public testing::Test {
protected:
    manual_clock clock;

    subscription_spec spec() {
        return {.project_id = "proj-1",
                .event_type = "order.*",
                .endpoint_url = "https://hooks.customer.example/in",
                .signing_secret_ref = current_ref};
    }
    result<webhook_subscription> create(subscription_spec s) {
        return webhook_subscription::create(tenant_ctx(), clock.now(), std::move(s));
    }
    webhook_subscription with_policy(subscription_attempt_policy p) {
        auto s = spec();
        s.attempt_policy = std::move(p);
        return create(std::move(s)).value();
    }
};

// ---- delay_before ---------------------------------------------------------------------------------

TEST_F(subscription_policy_test, the_default_schedule_is_5s_5min_30min_2h_5h_10h_10h) {
    auto s = create(spec()).value();
    EXPECT_EQ(s.delay_before(1), 0ms);
    EXPECT_EQ(s.delay_before(2), 5s);
    EXPECT_EQ(s.delay_before(3), 5min);
    EXPECT_EQ(s.delay_before(4), 30min);
    EXPECT_EQ(s.delay_before(5), 2h);
    EXPECT_EQ(s.delay_before(6), 5h);
    EXPECT_EQ(s.delay_before(7), 10h);
    EXPECT_EQ(s.delay_before(8), 10h);
    EXPECT_EQ(s.delay_before(9), 10h);  // past the schedule (a replay's extra attempts): its last delay
    EXPECT_EQ(s.attempt_policy().max_attempts, 8);
}

TEST_F(subscription_policy_test, schedule_ms_overrides_the_default_and_repeats_its_last_entry) {
    auto s = with_policy({.max_attempts = 4, .schedule_ms = std::vector<std::int64_t>{0, 1'000, 60'000}});
    EXPECT_EQ(s.delay_before(2), 0ms);
    EXPECT_EQ(s.delay_before(3), 1s);
    EXPECT_EQ(s.delay_before(4), 1min);
    EXPECT_EQ(s.delay_before(5), 1min);
    auto short_list = with_policy({.max_attempts = 5, .schedule_ms = std::vector<std::int64_t>{250}});
    EXPECT_EQ(short_list.delay_before(2), 250ms);
    EXPECT_EQ(short_list.delay_before(5), 250ms);
}

TEST_F(subscription_policy_test, without_a_schedule_the_policy_doubles_from_initial_to_max) {
    auto s = with_policy({.max_attempts = 10, .initial_delay_ms = 1'000, .max_delay_ms = 5'000});
    EXPECT_EQ(s.delay_before(2), 1s);
    EXPECT_EQ(s.delay_before(3), 2s);
    EXPECT_EQ(s.delay_before(4), 4s);
    EXPECT_EQ(s.delay_before(5), 5s);
    EXPECT_EQ(s.delay_before(50), 5s);
    auto empty = with_policy({.max_attempts = 3, .initial_delay_ms = 7, .max_delay_ms = 7,
                              .schedule_ms = std::vector<std::int64_t>{}});
    EXPECT_EQ(empty.delay_before(3), 7ms);
    auto longest = with_policy({.max_attempts = 50, .initial_delay_ms = 1, .max_delay_ms = max_retry_delay_ms});
    EXPECT_EQ(longest.delay_before(50), std::chrono::milliseconds(max_retry_delay_ms));
}

// A delay past the bound is refused; one stored before the bound was checked is read as the
// bound: added to the clock far beyond it, it overflowed into the past and the retry went at once.
TEST_F(subscription_policy_test, delays_are_bounded_at_seven_days) {
    for (auto p : {subscription_attempt_policy{.max_attempts = 3, .max_delay_ms = max_retry_delay_ms + 1},
                   subscription_attempt_policy{.max_attempts = 3, .schedule_ms = std::vector<std::int64_t>{0, 8'000'000'000'000}}}) {
        auto s = spec();
        s.attempt_policy = p;
        auto r = create(std::move(s));
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error(), errc::invalid_argument);
        EXPECT_NE(r.error().detail().find("7 days"), std::string::npos) << r.error().detail();
    }
    auto made = with_policy({.max_attempts = 3});
    auto data = made.data();
    data.attempt_policy->schedule_ms = std::vector<std::int64_t>{std::numeric_limits<std::int64_t>::max()};
    auto stored = webhook_subscription::restore(made.meta(), data).value();
    EXPECT_EQ(stored.delay_before(2), std::chrono::milliseconds(max_retry_delay_ms));
    data.attempt_policy->schedule_ms.reset();
    data.attempt_policy->initial_delay_ms = data.attempt_policy->max_delay_ms = std::numeric_limits<std::int64_t>::max();
    stored = webhook_subscription::restore(made.meta(), data).value();
    EXPECT_EQ(stored.delay_before(3), std::chrono::milliseconds(max_retry_delay_ms));
    auto const now = std::chrono::system_clock::now();
    EXPECT_GT(now + stored.delay_before(3), now);
}

// ---- validation of the new fields -------------------------------------------------------------------

TEST_F(subscription_policy_test, schedule_ms_needs_non_negative_entries_and_at_most_max_attempts_minus_one) {
    auto refused = [&](subscription_attempt_policy p, std::string_view says) {
        auto s = spec();
        s.attempt_policy = std::move(p);
        auto r = create(std::move(s));
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error(), errc::invalid_argument);
        EXPECT_NE(r.error().detail().find(says), std::string::npos) << r.error().detail();
    };
    refused({.max_attempts = 3, .schedule_ms = std::vector<std::int64_t>{0, 1, 2}}, "at most maxAttempts - 1 (2)");
    refused({.max_attempts = 1, .schedule_ms = std::vector<std::int64_t>{0}}, "at most maxAttempts - 1 (0)");
    refused({.max_attempts = 4, .schedule_ms = std::vector<std::int64_t>{0, -1}}, "scheduleMs[1]");
    EXPECT_TRUE(with_policy({.max_attempts = 3, .schedule_ms = std::vector<std::int64_t>{0, 0}}).active());
}

TEST_F(subscription_policy_test, max_per_second_is_1_to_10000) {
    for (std::int64_t bad : {std::int64_t{0}, std::int64_t{-1}, std::int64_t{10'001}}) {
        auto s = spec();
        s.max_per_second = bad;
        auto r = create(std::move(s));
        ASSERT_FALSE(r) << bad;
        EXPECT_NE(r.error().detail().find("maxPerSecond"), std::string::npos);
    }
    for (std::int64_t good : {std::int64_t{1}, std::int64_t{10'000}}) {
        auto s = spec();
        s.max_per_second = good;
        s.ordered = true;
        auto sub = create(std::move(s)).value();
        EXPECT_EQ(sub.data().max_per_second, good);
        EXPECT_TRUE(sub.data().ordered);
    }
}

TEST_F(subscription_policy_test, a_malformed_filter_is_refused_at_create_naming_its_position) {
    auto s = spec();
    s.filter = boost::json::parse(R"({"and": [{"exists": {"path": "$.a"}}, {"equals": {"path": "a.b", "value": 1}}]})");
    auto r = create(s);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::invalid_argument);
    EXPECT_EQ(r.error().detail().rfind("filter.and[1].equals.path: ", 0), 0u) << r.error().detail();
    s.filter = boost::json::parse(R"({"equals": {"path": "$.order.status", "value": "paid"}})");
    EXPECT_TRUE(create(s));
}

// ---- signing secrets and their rotation ---------------------------------------------------------------

TEST_F(subscription_policy_test, the_previous_secret_signs_too_until_the_overlap_ends) {
    auto s = create(spec()).value();
    EXPECT_EQ(s.signing_secret_refs(clock.now()), std::vector<std::string>{current_ref});
    ASSERT_TRUE(s.rotate_signing_secret(next_ref, clock.now(), 24h));
    EXPECT_EQ(s.data().signing_secret_ref, next_ref);
    EXPECT_EQ(s.data().previous_signing_secret_ref, current_ref);
    EXPECT_EQ(s.signing_secret_refs(clock.now()), (std::vector<std::string>{next_ref, current_ref}));
    clock.advance(24h - 1ms);
    EXPECT_EQ(s.signing_secret_refs(clock.now()), (std::vector<std::string>{next_ref, current_ref}));
    clock.advance(1ms);
    EXPECT_EQ(s.signing_secret_refs(clock.now()), std::vector<std::string>{next_ref});

    auto const& e = s.pending_events().back();
    EXPECT_EQ(e.event_type, events::event_type::webhook_signing_secret_rotated);
    EXPECT_EQ(e.data.at("subscriptionId").as_string(), s.id());
    auto const text = boost::json::serialize(e.data);
    EXPECT_EQ(text.find("vault://"), std::string::npos) << text;
    EXPECT_EQ(text.find("whsec"), std::string::npos) << text;
}

// A second rotation within the overlap keeps the first one's secret signing until its own end
// (it replaced it at once before: receivers still holding it refused every delivery).
TEST_F(subscription_policy_test, each_replaced_secret_signs_until_its_own_overlap_ends) {
    auto s = create(spec()).value();
    std::string const third = "vault://local/t1/whsec-third", fourth = "vault://local/t1/whsec-fourth";
    EXPECT_TRUE(s.rotate_signing_secret(next_ref, clock.now(), 1h).value().empty());
    clock.advance(10min);
    EXPECT_TRUE(s.rotate_signing_secret(third, clock.now(), 1h).value().empty());
    EXPECT_EQ(s.signing_secret_refs(clock.now()), (std::vector<std::string>{third, next_ref, current_ref}));
    clock.advance(50min);  // the first rotation's overlap ends
    EXPECT_EQ(s.signing_secret_refs(clock.now()), (std::vector<std::string>{third, next_ref}));
    clock.advance(10min);
    EXPECT_EQ(s.signing_secret_refs(clock.now()), std::vector<std::string>{third});
    // Without an overlap the replaced secret stops signing at once; the rotation hands back the
    // refs whose overlap had ended, for their secrets to be deleted.
    EXPECT_EQ(s.rotate_signing_secret(fourth, clock.now(), 0ms).value(), (std::vector<std::string>{next_ref, current_ref}));
    EXPECT_EQ(s.signing_secret_refs(clock.now()), std::vector<std::string>{fourth});
    EXPECT_FALSE(s.data().earlier_signing_secrets);
}

TEST_F(subscription_policy_test, rotations_past_the_bound_of_replaced_secrets_are_refused_until_the_oldest_ends) {
    auto s = create(spec()).value();
    for (std::size_t i = 0; i < webhooks::max_replaced_signing_secrets; ++i) {
        ASSERT_TRUE(s.rotate_signing_secret("vault://local/t1/whsec-r" + std::to_string(i), clock.now(), 1h));
        clock.advance(1min);
    }
    EXPECT_EQ(s.signing_secret_refs(clock.now()).size(), webhooks::max_replaced_signing_secrets + 1);
    auto before = snap(s);
    EXPECT_ERRC(s.rotate_signing_secret("vault://local/t1/whsec-over", clock.now(), 1h), errc::conflict);
    EXPECT_UNCHANGED(s, before);
    clock.advance(1h - 8min);  // the first replaced secret (the original) stops signing
    EXPECT_EQ(s.rotate_signing_secret("vault://local/t1/whsec-over", clock.now(), 1h).value(),
              std::vector<std::string>{current_ref});
    EXPECT_EQ(s.signing_secret_refs(clock.now()).size(), webhooks::max_replaced_signing_secrets + 1);
}

TEST_F(subscription_policy_test, a_rotation_needs_another_valid_ref_and_a_non_negative_overlap) {
    auto s = create(spec()).value();
    auto before = snap(s);
    EXPECT_ERRC(s.rotate_signing_secret(current_ref, clock.now(), 1h), errc::invalid_argument);
    EXPECT_ERRC(s.rotate_signing_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", clock.now(), 1h), errc::invalid_argument);
    EXPECT_ERRC(s.rotate_signing_secret(next_ref, clock.now(), -1ms), errc::invalid_argument);
    EXPECT_UNCHANGED(s, before);
}

// ---- deactivate, reactivate, auto-disable --------------------------------------------------------------

TEST_F(subscription_policy_test, reactivate_turns_an_inactive_subscription_back_on) {
    auto s = create(spec()).value();
    EXPECT_ERRC(s.reactivate(), errc::invalid_state);
    s.record_outcome(false, clock.now(), 0);
    s.deactivate("paused by the customer").value();
    EXPECT_EQ(s.data().deactivation_reason, "paused by the customer");
    ASSERT_TRUE(s.reactivate());
    EXPECT_TRUE(s.active());
    EXPECT_EQ(s.data().consecutive_failures, 0);
    EXPECT_FALSE(s.data().deactivation_reason);
    EXPECT_EQ(event_types(s).back(), events::event_type::webhook_subscription_reactivated);
    EXPECT_EQ(s.pending_events().back().data.at("subscriptionId").as_string(), s.id());
}

TEST_F(subscription_policy_test, consecutive_failures_disable_the_subscription_once_with_an_event) {
    auto s = create(spec()).value();
    for (int i = 0; i < 19; ++i) EXPECT_FALSE(s.record_outcome(false, clock.now(), 20));
    EXPECT_EQ(s.data().consecutive_failures, 19);
    EXPECT_FALSE(s.record_outcome(true, clock.now(), 20));  // a success ends the run
    EXPECT_EQ(s.data().consecutive_failures, 0);
    EXPECT_TRUE(s.active());
    for (int i = 0; i < 19; ++i) EXPECT_FALSE(s.record_outcome(false, clock.now(), 20));
    EXPECT_TRUE(s.record_outcome(false, clock.now(), 20));
    EXPECT_FALSE(s.active());
    EXPECT_EQ(s.data().deactivation_reason, "auto-disabled after 20 consecutive failures");
    auto const& e = s.pending_events().back();
    EXPECT_EQ(e.event_type, events::event_type::webhook_subscription_deactivated);
    EXPECT_EQ(e.data.at("reason").as_string(), "auto-disabled after 20 consecutive failures");
    auto const events_after = s.pending_events().size();
    EXPECT_FALSE(s.record_outcome(false, clock.now(), 20));  // already off: no second event
    EXPECT_EQ(s.pending_events().size(), events_after);
}

// A burst of failures (a receiver down for the seconds of its deploy, many deliveries in flight)
// does not disable the subscription: the run of failures must also have lasted `failing_for`,
// counted from its first failure, which a success resets.
TEST_F(subscription_policy_test, a_burst_of_failures_disables_only_once_the_run_has_lasted) {
    auto s = create(spec()).value();
    for (int i = 0; i < 50; ++i) EXPECT_FALSE(s.record_outcome(false, clock.now(), 20, 1h));
    EXPECT_TRUE(s.active());
    EXPECT_EQ(s.data().failing_since, truncate_ms(clock.now()));
    clock.advance(59min);
    EXPECT_FALSE(s.record_outcome(false, clock.now(), 20, 1h));
    EXPECT_FALSE(s.record_outcome(true, clock.now(), 20, 1h));  // a success starts it over
    EXPECT_FALSE(s.data().failing_since);
    clock.advance(2min);
    for (int i = 0; i < 20; ++i) EXPECT_FALSE(s.record_outcome(false, clock.now(), 20, 1h));
    clock.advance(1h);
    EXPECT_TRUE(s.record_outcome(false, clock.now(), 20, 1h));
    EXPECT_FALSE(s.active());
    EXPECT_EQ(s.data().deactivation_reason, "auto-disabled after 21 consecutive failures");
    ASSERT_TRUE(s.reactivate());
    EXPECT_FALSE(s.data().failing_since);
}

TEST_F(subscription_policy_test, disable_after_zero_never_disables) {
    auto s = create(spec()).value();
    for (int i = 0; i < 100; ++i) EXPECT_FALSE(s.record_outcome(false, clock.now(), 0));
    EXPECT_TRUE(s.active());
    EXPECT_EQ(s.data().consecutive_failures, 100);
    EXPECT_TRUE(s.record_outcome(false, clock.now(), 1));
    EXPECT_FALSE(s.active());
}

}  // namespace
