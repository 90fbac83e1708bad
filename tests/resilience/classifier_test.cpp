#include <integration/outbound/classifier.hpp>

#include <integration/core/time.hpp>

#include <gtest/gtest.h>

namespace integration::failures {
namespace {

using namespace std::chrono_literals;

attempt_outcome answer(int status, http::headers h = {}) { return {http::response{status, std::move(h), ""}, std::nullopt}; }
attempt_outcome broken(errc e) { return {std::nullopt, error{e, "x"}}; }

class classifier : public ::testing::Test {
protected:
    time_point now_ = parse_time("2026-11-24T10:00:00Z").value();
    resilience::retry_options retry_{.max_attempts = 3, .base_delay = 1'000ms, .max_delay = 60'000ms, .total_deadline = 600'000ms};
    std::optional<classification> run(attempt_outcome const& o, int attempt = 1) { return classify(o, attempt, retry_, now_, 0ms, 0.5); }
};

TEST_F(classifier, success_is_not_a_failure) {
    EXPECT_FALSE(run(answer(200)));
    EXPECT_FALSE(run(answer(204)));
}

TEST_F(classifier, server_errors_and_timeouts_are_transient_and_retried_with_backoff) {
    for (auto const& o : {answer(500), answer(502), answer(503), answer(504), answer(408), broken(errc::timeout),
                          broken(errc::unavailable), broken(errc::connection_lost)}) {
        auto c = run(o);
        ASSERT_TRUE(c);
        EXPECT_EQ(c->category, failure_category::transient);
        EXPECT_EQ(c->next_action, next_action::retry);
        EXPECT_EQ(c->next_attempt_at, now_ + 500ms);  // full jitter: 0.5 of the 1 s base
    }
    EXPECT_EQ(run(broken(errc::timeout))->error_code, "timeout");
    EXPECT_EQ(run(broken(errc::connection_lost))->error_code, "connection_lost");
    EXPECT_EQ(run(answer(503))->error_code, "http_503");
}

TEST_F(classifier, rate_limits_wait_what_the_server_asked) {
    auto c = run(answer(429, {{"Retry-After", "30"}}));
    EXPECT_EQ(c->category, failure_category::rate_limited);
    EXPECT_EQ(c->next_action, next_action::retry);
    EXPECT_EQ(c->next_attempt_at, now_ + 30s);
    auto dated = run(answer(429, {{"Retry-After", "Tue, 24 Nov 2026 10:01:00 GMT"}}));
    EXPECT_EQ(dated->next_attempt_at, now_ + 60s);
    EXPECT_EQ(run(answer(503, {{"Retry-After", "7"}}))->next_attempt_at, now_ + 7s);
}

TEST_F(classifier, auth_escalates_validation_and_poison_dead_letter_and_none_retry) {
    auto auth = run(answer(401));
    EXPECT_EQ(auth->category, failure_category::auth);
    EXPECT_EQ(auth->next_action, next_action::escalate);
    for (int s : {400, 404, 409, 422}) {
        auto v = run(answer(s));
        EXPECT_EQ(v->category, failure_category::validation) << s;
        EXPECT_EQ(v->next_action, next_action::dead_letter) << s;
        EXPECT_FALSE(v->next_attempt_at);
    }
    for (auto const& o : {answer(501), answer(302), broken(errc::egress_denied)}) {
        auto p = run(o);
        EXPECT_EQ(p->category, failure_category::poison);
        EXPECT_EQ(p->next_action, next_action::dead_letter);
    }
}

// A POST without an idempotency key: sent again only when the vendor provably did not act on it.
TEST_F(classifier, a_request_that_must_not_be_repeated_escalates_once_the_vendor_may_have_acted_on_it) {
    auto once = [](attempt_outcome o) {
        o.repeatable = false;
        return o;
    };
    for (auto const& o : {answer(500), answer(502), answer(503), answer(504), broken(errc::timeout), broken(errc::connection_lost)}) {
        auto c = run(once(o));
        ASSERT_TRUE(c);
        EXPECT_EQ(c->category, failure_category::transient) << c->error_code;
        EXPECT_EQ(c->next_action, next_action::escalate) << c->error_code;
        EXPECT_FALSE(c->next_attempt_at) << c->error_code;
        EXPECT_NE(c->message.find("not sent again"), std::string::npos) << c->message;
    }
    // Nothing went out, or the vendor refused it before reading it: as for any request.
    for (auto const& o : {broken(errc::unavailable), answer(408), answer(425), answer(429)}) {
        auto c = run(once(o));
        ASSERT_TRUE(c);
        EXPECT_EQ(c->next_action, next_action::retry) << c->error_code;
        EXPECT_EQ(c->message.find("not sent again"), std::string::npos) << c->message;
    }
    // Failures that are never retried end as they would anyway.
    EXPECT_EQ(run(once(answer(422)))->next_action, next_action::dead_letter);
    EXPECT_EQ(run(once(answer(401)))->next_action, next_action::escalate);
    EXPECT_EQ(run(once(answer(501)))->next_action, next_action::dead_letter);
}

TEST_F(classifier, retries_stop_when_attempts_or_the_deadline_run_out) {
    EXPECT_EQ(run(answer(503), 3)->next_action, next_action::dead_letter);
    auto late = classify(answer(503), 1, retry_, now_, 599'900ms, 0.5);
    EXPECT_EQ(late->next_action, next_action::dead_letter);
}

}  // namespace
}  // namespace integration::failures
