#include <integration/outbound/pipeline.hpp>

#include <integration/backends/curl/curl_transport.hpp>

#include "support/keep_alive_server.hpp"

#include <gtest/gtest.h>

#include <map>
#include <mutex>

namespace integration::http {
namespace {

using namespace std::chrono_literals;

/** Notes its name in `seen` and passes the request on. */
class marker final : public policy {
public:
    marker(std::string name, std::vector<std::string>& seen) : name_(std::move(name)), seen_(seen) {}
    result<response> send(request& r, next_policy next, call_context& call) override {
        seen_.push_back(name_);
        r.headers.emplace_back("X-Policy", name_);
        return next.send(r, call);
    }

private:
    std::string name_;
    std::vector<std::string>& seen_;
};

/** A resolver that counts the lookups of each name. */
class counting_resolver final : public net::resolver {
public:
    explicit counting_resolver(net::resolver& inner) : inner_(inner) {}
    result<std::vector<net::ip_address>> resolve(std::string const& host) override {
        ++lookups_[host];
        return inner_.resolve(host);
    }
    std::size_t lookups(std::string const& host) { return lookups_[host]; }

private:
    net::resolver& inner_;
    std::map<std::string, std::size_t> lookups_;
};

class pipeline_test : public ::testing::Test {
protected:
    pipeline build(std::vector<std::unique_ptr<policy>> policies) { return pipeline(*curl_, std::move(policies)); }
    hop_check egress() {
        return egress_hop_check(net::egress_policy{.allow = {net::cidr::parse("127.0.0.1/32").value()}}, counted_);
    }
    std::string url(std::string const& host, std::uint16_t port) const {
        return "http://" + host + ":" + std::to_string(port) + "/x";
    }

    std::vector<std::string> seen_;
    std::mutex status_mutex_;
    std::vector<int> statuses_;  // answered in turn, the last one forever
    testing::keep_alive_server vendor_{[this](testing::received_request const& r) {
        std::lock_guard lock(status_mutex_);
        auto status = statuses_.empty() ? 200 : statuses_.front();
        if (statuses_.size() > 1) statuses_.erase(statuses_.begin());
        return testing::http_answer_bytes(status, r.head);
    }};
    testing::keep_alive_server inside_{[](testing::received_request const&) { return testing::http_answer_bytes(200, ""); },
                                       "127.0.0.2"};
    net::static_resolver dns_;
    counting_resolver counted_{dns_};
    manual_clock clock_;
    std::unique_ptr<transport> curl_ = make_curl_transport();
};

TEST_F(pipeline_test, policies_run_in_order_then_the_transport) {
    std::vector<std::unique_ptr<policy>> policies;
    policies.push_back(std::make_unique<marker>("first", seen_));
    policies.push_back(std::make_unique<trace_context_policy>());
    policies.push_back(std::make_unique<marker>("second", seen_));
    auto p = build(std::move(policies));
    auto ctx = request_context::for_tenant("t1");
    request r{.url = url("127.0.0.1", vendor_.port())};
    call_context call{.ctx = &ctx};
    auto res = p.send(r, call);
    ASSERT_TRUE(res) << res.error().detail();
    EXPECT_EQ(seen_, (std::vector<std::string>{"first", "second"}));
    EXPECT_TRUE(call.sent);
    ASSERT_EQ(vendor_.requests().size(), 1u);
    auto const head = vendor_.requests()[0].head;  // requests() returns a copy
    EXPECT_LT(head.find("X-Policy: first"), head.find("X-Policy: second")) << head;
    EXPECT_NE(head.find("traceparent: 00-" + ctx.trace.trace_id + "-"), std::string::npos) << head;
}

TEST_F(pipeline_test, a_refused_destination_stops_the_call_before_every_later_policy_and_resolves_once) {
    dns_.add("inside.test", {*net::ip_address::parse("127.0.0.2")});
    std::vector<std::unique_ptr<policy>> policies;
    policies.push_back(std::make_unique<egress_policy_step>(egress()));
    policies.push_back(std::make_unique<marker>("behind", seen_));
    auto p = build(std::move(policies));
    request r{.url = url("inside.test", inside_.port())};
    call_context call;
    EXPECT_EQ(p.send(r, call).error(), errc::egress_denied);
    EXPECT_TRUE(seen_.empty());
    EXPECT_FALSE(call.sent);
    EXPECT_TRUE(inside_.requests().empty());

    dns_.add("vendor.test", {*net::ip_address::parse("127.0.0.1")});
    request ok{.url = url("vendor.test", vendor_.port())};
    ASSERT_TRUE(p.send(ok, call));
    ASSERT_TRUE(ok.pin.has_value());  // the checked address, which the transport connects to
    EXPECT_EQ(ok.pin->address, "127.0.0.1");
    EXPECT_EQ(counted_.lookups("vendor.test"), 1u);  // one resolution per hop
}

// A hop check may approve an address literal without a pin (its contract allows it): the guard
// pins the literal itself. A name approved without a pin is refused, not sent unpinned (and not
// thrown as bad_optional_access, as it once was).
TEST_F(pipeline_test, a_hop_check_that_pins_nothing_gets_the_literal_pinned_and_a_name_refused) {
    std::vector<std::unique_ptr<policy>> policies;
    policies.push_back(std::make_unique<egress_policy_step>(
        [](std::string_view) -> result<std::optional<pinned_address>> { return std::optional<pinned_address>{}; }));
    policies.push_back(std::make_unique<marker>("behind", seen_));
    auto p = build(std::move(policies));
    request literal{.url = url("127.0.0.1", vendor_.port())};
    call_context call;
    auto sent = p.send(literal, call);
    ASSERT_TRUE(sent) << sent.error().detail();
    ASSERT_TRUE(literal.pin);
    EXPECT_EQ(literal.pin->address, "127.0.0.1");
    EXPECT_EQ(vendor_.requests().size(), 1u);
    dns_.add("vendor.test", {*net::ip_address::parse("127.0.0.1")});
    request named{.url = url("vendor.test", vendor_.port())};
    call_context again;
    result<response> res = error{errc::unavailable, "not sent"};
    EXPECT_NO_THROW(res = p.send(named, again));
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::egress_denied);
    EXPECT_EQ(vendor_.requests().size(), 1u);
}

/** Throws instead of passing the request on. */
class throwing final : public policy {
public:
    result<response> send(request&, next_policy, call_context&) override { throw std::runtime_error("an embedder's resolver threw"); }
};

// A half-open breaker's probe that throws (an embedder's resolver behind it) is recorded as failed:
// the breaker opens again for a break, then lets the next probe through, where it once refused
// every call for as long as the process ran.
TEST_F(pipeline_test, a_probe_that_throws_does_not_hold_the_breaker_half_open) {
    resilience::circuit_breaker breaker(clock_, {.consecutive_failures = 1, .break_duration = 1'000ms});
    auto opened = breaker.allow();
    ASSERT_TRUE(opened);
    breaker.record(*opened, false);
    clock_.advance(1'000ms);
    std::vector<std::unique_ptr<policy>> failing;
    failing.push_back(std::make_unique<circuit_breaker_policy>());
    failing.push_back(std::make_unique<throwing>());
    auto probe = build(std::move(failing));
    request r{.url = url("127.0.0.1", vendor_.port())};
    call_context call{.breaker = &breaker};
    EXPECT_THROW(probe.send(r, call), std::runtime_error);
    EXPECT_EQ(breaker.state(), resilience::breaker_state::open);
    clock_.advance(1'000ms);
    std::vector<std::unique_ptr<policy>> working;
    working.push_back(std::make_unique<circuit_breaker_policy>());
    auto p = build(std::move(working));
    call_context next{.breaker = &breaker};
    auto res = p.send(r, next);
    ASSERT_TRUE(res) << res.error().detail();
    EXPECT_EQ(breaker.state(), resilience::breaker_state::closed);
}

TEST_F(pipeline_test, retry_follows_the_calls_own_options_and_reports_every_attempt) {
    statuses_ = {503, 503, 503, 200};
    std::vector<std::chrono::milliseconds> slept;
    std::vector<std::unique_ptr<policy>> policies;
    policies.push_back(std::make_unique<retry_policy>(
        clock_, retry_policy_options{.retry = {.max_attempts = 4, .base_delay = 1'000ms},
                                     .sleep = [&](std::chrono::milliseconds d) { slept.push_back(d); clock_.advance(d); },
                                     .random = [] { return 0.5; }}));
    auto p = build(std::move(policies));
    std::vector<int> reported;
    request r{.url = url("127.0.0.1", vendor_.port())};
    call_context call{.retry = resilience::retry_options{.max_attempts = 2, .base_delay = 200ms},
                      .on_attempt = [&](attempt_report const& a) { reported.push_back((*a.outcome)->status); }};
    auto res = p.send(r, call);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 503);
    EXPECT_EQ(reported, (std::vector<int>{503, 503}));
    EXPECT_EQ(slept, (std::vector<std::chrono::milliseconds>{100ms}));
    ASSERT_TRUE(call.failure.has_value());
    EXPECT_EQ(call.failure->category, failures::failure_category::transient);
    EXPECT_EQ(vendor_.requests().size(), 2u);
}

TEST_F(pipeline_test, a_spent_budget_answers_429_without_sending_and_an_open_breaker_refuses) {
    resilience::rate_limiter limits(clock_);
    std::vector<std::unique_ptr<policy>> policies;
    policies.push_back(std::make_unique<rate_limit_policy>(limits, rate_limit_policy_options{.max_wait = 0ms}));
    policies.push_back(std::make_unique<circuit_breaker_policy>());
    auto p = build(std::move(policies));
    resilience::circuit_breaker breaker(clock_, {.consecutive_failures = 1, .break_duration = 60'000ms});
    call_context call{.rate_limit_key = "t1/p/c", .rate_limit = rate_limit_profile{.requests_per_second = 0.001, .burst = 1},
                      .breaker = &breaker};
    request r{.url = url("127.0.0.1", vendor_.port())};
    statuses_ = {500};
    EXPECT_EQ(p.send(r, call)->status, 500);
    EXPECT_EQ(breaker.state(), resilience::breaker_state::open);
    call.sent = false;
    auto limited = p.send(r, call);
    ASSERT_TRUE(limited);
    EXPECT_EQ(limited->status, 429);
    EXPECT_FALSE(find_header(limited->headers, "Retry-After").empty());
    EXPECT_FALSE(call.sent);
    call.rate_limit.reset();
    EXPECT_EQ(p.send(r, call).error(), errc::unavailable);  // the breaker, before any byte
    EXPECT_EQ(vendor_.requests().size(), 1u);
}

/** A transport whose started calls wait until the test answers them. */
class held_transport final : public transport {
public:
    result<response> send(request const&) override { return error{errc::unavailable, "only start is used"}; }
    void start(request r, completion done) override { held.emplace_back(std::move(r), std::move(done)); }
    std::vector<std::pair<request, completion>> held;
};

// A started call returns at once: the transport holds it, the retry waits on the scheduler (never
// on the calling thread), and every attempt is checked and pinned by the egress step, admitted by
// the breaker and limited again before it goes out.
TEST_F(pipeline_test, a_started_call_holds_no_thread_while_it_waits_for_the_vendor_or_between_attempts) {
    held_transport held;
    std::vector<std::pair<std::chrono::milliseconds, std::function<void()>>> scheduled;
    auto later = [&](std::chrono::milliseconds d, std::function<void()> fn) { scheduled.emplace_back(d, std::move(fn)); };
    resilience::rate_limiter limits(clock_);
    dns_.add("vendor.test", {*net::ip_address::parse("127.0.0.1")});
    std::vector<std::unique_ptr<policy>> policies;
    policies.push_back(std::make_unique<retry_policy>(
        clock_, retry_policy_options{.retry = {.max_attempts = 3, .base_delay = 2'000ms}, .random = [] { return 0.5; }, .schedule = later}));
    policies.push_back(std::make_unique<egress_policy_step>(egress()));
    policies.push_back(std::make_unique<rate_limit_policy>(limits, rate_limit_policy_options{.max_wait = 5'000ms, .schedule = later}));
    policies.push_back(std::make_unique<circuit_breaker_policy>());
    pipeline p(held, std::move(policies));
    resilience::circuit_breaker breaker(clock_, {.consecutive_failures = 5, .break_duration = 60'000ms});
    std::vector<int> reported;
    call_context call{.rate_limit_key = "t1/p/c", .rate_limit = rate_limit_profile{.requests_per_second = 1, .burst = 1},
                      .breaker = &breaker,
                      .on_attempt = [&](attempt_report const& a) { reported.push_back(*a.outcome ? (*a.outcome)->status : 0); }};
    request r{.url = url("vendor.test", vendor_.port())};
    std::optional<result<response>> outcome;
    p.start(r, call, [&](result<response> res) { outcome = std::move(res); });

    ASSERT_EQ(held.held.size(), 1u);  // in flight, and start has returned
    EXPECT_FALSE(outcome);
    ASSERT_TRUE(held.held[0].first.pin);
    EXPECT_EQ(held.held[0].first.pin->address, "127.0.0.1");
    std::exchange(held.held, {})[0].second(response{503, {}, "busy"});
    ASSERT_EQ(scheduled.size(), 1u);  // the backoff, on the scheduler
    EXPECT_EQ(scheduled[0].first, 1'000ms);
    EXPECT_TRUE(held.held.empty());
    clock_.advance(scheduled[0].first);
    std::exchange(scheduled, {})[0].second();
    // The budget (1 a second) was spent by the first attempt, refilled by the wait: sent again.
    ASSERT_EQ(held.held.size(), 1u);
    EXPECT_EQ(counted_.lookups("vendor.test"), 2u);  // checked and pinned again on the second attempt
    std::exchange(held.held, {})[0].second(response{200, {}, "ok"});
    ASSERT_TRUE(outcome);
    ASSERT_TRUE(*outcome);
    EXPECT_EQ((*outcome)->status, 200);
    EXPECT_EQ(reported, (std::vector<int>{503, 200}));
    EXPECT_FALSE(call.failure);

    // A second call right away finds the budget spent: it waits for the token on the scheduler.
    request again{.url = url("vendor.test", vendor_.port())};
    outcome.reset();
    p.start(again, call, [&](result<response> res) { outcome = std::move(res); });
    ASSERT_EQ(scheduled.size(), 1u);
    EXPECT_TRUE(held.held.empty());
    clock_.advance(scheduled[0].first);
    std::exchange(scheduled, {})[0].second();
    ASSERT_EQ(held.held.size(), 1u);
    std::exchange(held.held, {})[0].second(response{200, {}, "ok"});
    ASSERT_TRUE(outcome && *outcome);

    // A refused destination ends a started call before the transport, as send does.
    dns_.add("inside.test", {*net::ip_address::parse("127.0.0.2")});
    request inside{.url = url("inside.test", inside_.port())};
    outcome.reset();
    p.start(inside, call, [&](result<response> res) { outcome = std::move(res); });
    ASSERT_TRUE(outcome);
    EXPECT_EQ(outcome->error(), errc::egress_denied);
    EXPECT_TRUE(held.held.empty());
}

// After a wait the call goes on through `call.offload`, not on the thread that ended the wait
// (the process's one timer thread): the next attempt's steps may block (a token fetched again, a
// DNS lookup) and would hold every other call's wait behind them.
TEST_F(pipeline_test, a_started_call_goes_on_through_its_offload_after_a_retrys_or_a_rate_limits_wait) {
    held_transport held;
    std::vector<std::function<void()>> scheduled, offloaded;
    auto later = [&](std::chrono::milliseconds, std::function<void()> fn) { scheduled.push_back(std::move(fn)); };
    resilience::rate_limiter limits(clock_);
    std::vector<std::unique_ptr<policy>> policies;
    policies.push_back(std::make_unique<retry_policy>(
        clock_, retry_policy_options{.retry = {.max_attempts = 2, .base_delay = 2'000ms}, .random = [] { return 0.5; }, .schedule = later}));
    policies.push_back(std::make_unique<rate_limit_policy>(limits, rate_limit_policy_options{.max_wait = 5'000ms, .schedule = later}));
    pipeline p(held, std::move(policies));
    call_context call{.rate_limit_key = "t1/p/c", .rate_limit = rate_limit_profile{.requests_per_second = 1, .burst = 1},
                      .offload = [&](std::function<void()> step) { offloaded.push_back(std::move(step)); }};
    request r{.url = url("127.0.0.1", vendor_.port())};
    std::optional<result<response>> outcome;
    p.start(r, call, [&](result<response> res) { outcome = std::move(res); });
    ASSERT_EQ(held.held.size(), 1u);
    EXPECT_TRUE(offloaded.empty()) << "the first attempt goes out on the caller's thread";
    std::exchange(held.held, {})[0].second(response{503, {}, "busy"});
    ASSERT_EQ(scheduled.size(), 1u);
    clock_.advance(2'000ms);
    std::exchange(scheduled, {})[0]();  // the retry's wait ends
    EXPECT_TRUE(held.held.empty()) << "the next attempt was started on the timer's thread";
    ASSERT_EQ(offloaded.size(), 1u);
    std::exchange(offloaded, {})[0]();
    ASSERT_EQ(held.held.size(), 1u);
    std::exchange(held.held, {})[0].second(response{200, {}, "ok"});
    ASSERT_TRUE(outcome && *outcome);
    EXPECT_EQ((*outcome)->status, 200);

    // A call waiting for a rate-limit token goes on through the offload as well.
    request again{.url = url("127.0.0.1", vendor_.port())};
    outcome.reset();
    p.start(again, call, [&](result<response> res) { outcome = std::move(res); });
    ASSERT_EQ(scheduled.size(), 1u);
    clock_.advance(1'000ms);
    std::exchange(scheduled, {})[0]();
    EXPECT_TRUE(held.held.empty());
    ASSERT_EQ(offloaded.size(), 1u);
    std::exchange(offloaded, {})[0]();
    ASSERT_EQ(held.held.size(), 1u);
    std::exchange(held.held, {})[0].second(response{200, {}, "ok"});
    ASSERT_TRUE(outcome && *outcome);
}

}  // namespace
}  // namespace integration::http
