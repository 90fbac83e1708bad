#include <integration/outbound/pipeline.hpp>

#include <integration/outbound/classifier.hpp>

#include <random>
#include <thread>
#include <utility>

namespace integration::http {

using namespace std::chrono;

namespace {

// Runs the call's before_first_send once; false when it refused the call.
bool commit(call_context& call) {
    if (!call.before_first_send) return true;
    auto hook = std::exchange(call.before_first_send, nullptr);
    if (hook()) return true;
    call.stopped = true;
    return false;
}

}  // namespace

result<response> next_policy::send(request& r, call_context& call) const {
    if (!rest_.empty()) return rest_.front()->send(r, next_policy(rest_.subspan(1), transport_), call);
    if (!commit(call)) return error{errc::cancelled, "the call was stopped before it was sent"};
    call.sent = true;
    return transport_.send(r);
}

pipeline::pipeline(transport& transport, std::vector<std::unique_ptr<policy>> policies)
    : transport_(&transport), policies_(std::move(policies)) {}

result<response> pipeline::send(request& r, call_context& call) const {
    return next_policy(policies_, *transport_).send(r, call);
}

result<response> trace_context_policy::send(request& r, next_policy next, call_context& call) {
    if (call.ctx && find_header(r.headers, "traceparent").empty())
        r.headers.emplace_back("traceparent", call.ctx->trace.child().traceparent());
    return next.send(r, call);
}

result<pinned_address> egress_policy_step::check(std::string_view url) const {
    auto pin = check_(url);
    if (!pin) return pin.error();
    return pin->value();  // egress_hop_check pins every destination it approves
}

result<response> egress_policy_step::send(request& r, next_policy next, call_context& call) {
    auto pin = check(r.url);
    if (!pin) return pin.error();
    r.pin = std::move(*pin);
    return next.send(r, call);
}

namespace {

// The rest of the pipeline as a transport, for send_following_redirects.
class rest_as_transport final : public transport {
public:
    rest_as_transport(next_policy next, call_context& call) : next_(next), call_(call) {}
    result<response> send(request const& r) override {
        auto hop = r;
        return next_.send(hop, call_);
    }

private:
    next_policy next_;
    call_context& call_;
};

void sleep_thread(milliseconds d) { std::this_thread::sleep_for(d); }

}  // namespace

result<response> redirect_policy::send(request& r, next_policy next, call_context& call) {
    if (options_.max_hops == 0) return next.send(r, call);
    rest_as_transport rest(next, call);
    return send_following_redirects(rest, r, options_, check_);
}

rate_limit_policy::rate_limit_policy(resilience::rate_limit_store& limits, rate_limit_policy_options options)
    : limits_(limits), options_(std::move(options)) {
    if (!options_.sleep) options_.sleep = sleep_thread;
}

result<response> rate_limit_policy::send(request& r, next_policy next, call_context& call) {
    if (!call.rate_limit) return next.send(r, call);
    auto a = limits_.try_acquire(call.rate_limit_key, *call.rate_limit);
    if (!a.granted && a.retry_after <= options_.max_wait) {
        options_.sleep(ceil<milliseconds>(a.retry_after));
        a = limits_.try_acquire(call.rate_limit_key, *call.rate_limit);
    }
    if (a.granted) return next.send(r, call);
    // Our own budget is spent: answer as the vendor would, with the time to the next token.
    return response{429, {{"Retry-After", std::to_string(duration_cast<seconds>(a.retry_after).count() + 1)}}, ""};
}

result<response> circuit_breaker_policy::send(request& r, next_policy next, call_context& call) {
    if (!call.breaker) return next.send(r, call);
    // Committed before the breaker is asked: a call stopped then leaves no half-open probe behind.
    if (!commit(call)) return error{errc::cancelled, "the call was stopped before it was sent"};
    if (!call.breaker->allow()) return error{errc::unavailable, "circuit open: the destination failed repeatedly; calls resume after the "
                                        "breaker's break duration"};
    auto res = next.send(r, call);
    call.breaker->record(res && res->status < 500);
    return res;
}

retry_policy::retry_policy(integration::clock const& clock, retry_policy_options options)
    : clock_(clock), options_(std::move(options)) {
    if (!options_.sleep) options_.sleep = sleep_thread;
    if (!options_.random)
        options_.random = [] {
            thread_local std::mt19937_64 rng{std::random_device{}()};
            return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
        };
}

result<response> retry_policy::send(request& r, next_policy next, call_context& call) {
    auto const& o = call.retry ? *call.retry : options_.retry;
    auto const first_start = clock_.now();
    for (int n = 1;; ++n) {
        auto const attempt_start = clock_.now();
        call.sent = false;
        auto res = next.send(r, call);
        if (call.stopped) return res;
        failures::attempt_outcome outcome;
        if (res) outcome.response = std::move(*res);
        else outcome.transport_error = res.error();
        auto const now = clock_.now();
        auto const elapsed = duration_cast<milliseconds>(now - first_start);
        call.failure = failures::classify(outcome, n, o, now, elapsed, options_.random());
        if (res) *res = std::move(*outcome.response);  // classified without a copy of the body
        if (!res && res.error() == errc::cancelled && call.failure) {
            call.failure->category = failures::failure_category::validation;  // the caller gave up: never retried
            call.failure->error_code = "cancelled";
            call.failure->next_action = failures::next_action::dead_letter;
            call.failure->next_attempt_at.reset();
        }
        if (call.on_attempt) call.on_attempt({n, &res, call.sent, call.failure, attempt_start, now});
        if (!call.failure || call.failure->next_action != failures::next_action::retry || n >= o.max_attempts) return res;
        options_.sleep(duration_cast<milliseconds>(*call.failure->next_attempt_at - now));
    }
}

}  // namespace integration::http
