#include <integration/outbound/pipeline.hpp>

#include "../detail/url_destination.hpp"

#include <integration/outbound/classifier.hpp>

#include <condition_variable>
#include <map>
#include <mutex>
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

/** One thread for the process that runs each scheduled function when it is due. */
class timer_thread {
public:
    timer_thread() : thread_([this] { run(); }) {}
    ~timer_thread() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        cv_.notify_one();
        thread_.join();
    }
    timer_thread(timer_thread const&) = delete;
    timer_thread& operator=(timer_thread const&) = delete;

    void after(milliseconds delay, std::function<void()> fn) {
        bool first;
        {
            std::lock_guard lock(mutex_);
            auto at = steady_clock::now() + std::max(delay, milliseconds(0));
            first = due_.empty() || at < due_.begin()->first;
            due_.emplace(at, std::move(fn));
        }
        if (first) cv_.notify_one();
    }

private:
    void run() {
        std::unique_lock lock(mutex_);
        while (!stopping_) {
            if (due_.empty()) {
                cv_.wait(lock);
                continue;
            }
            auto next = due_.begin();
            if (next->first > steady_clock::now()) {
                cv_.wait_until(lock, next->first);
                continue;
            }
            auto fn = std::move(next->second);
            due_.erase(next);
            lock.unlock();
            try {
                fn();
            } catch (...) {  // a throwing function must not end the timer for every other call
            }
            lock.lock();
        }
    }

    std::mutex mutex_;
    std::condition_variable cv_;
    std::multimap<steady_clock::time_point, std::function<void()>> due_;
    bool stopping_ = false;
    std::thread thread_;  // last: started once the rest exists
};

}  // namespace

void go_on(call_context& call, std::function<void()> step) {
    if (call.offload) return call.offload(std::move(step));
    step();
}

scheduler waits_on(std::function<void(milliseconds)> sleep) {
    if (sleep)
        return [sleep = std::move(sleep)](milliseconds d, std::function<void()> fn) {
            sleep(d);
            fn();
        };
    return [](milliseconds d, std::function<void()> fn) {
        static timer_thread timer;
        timer.after(d, std::move(fn));
    };
}

void policy::start(request& r, next_policy next, call_context& call, transport::completion done) {
    done(send(r, next, call));
}

void next_policy::start(request& r, call_context& call, transport::completion done) const {
    if (!rest_.empty()) return rest_.front()->start(r, next_policy(rest_.subspan(1), transport_), call, std::move(done));
    if (!commit(call)) return done(error{errc::cancelled, "the call was stopped before it was sent"});
    call.sent = true;
    transport_.start(r, std::move(done));
}

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

void pipeline::start(request& r, call_context& call, transport::completion done) const {
    next_policy(policies_, *transport_).start(r, call, std::move(done));
}

namespace {

void add_traceparent(request& r, call_context const& call) {
    if (call.ctx && find_header(r.headers, "traceparent").empty())
        r.headers.emplace_back("traceparent", call.ctx->trace.child().traceparent());
}

}  // namespace

void trace_context_policy::start(request& r, next_policy next, call_context& call, transport::completion done) {
    add_traceparent(r, call);
    next.start(r, call, std::move(done));
}

result<response> trace_context_policy::send(request& r, next_policy next, call_context& call) {
    add_traceparent(r, call);
    return next.send(r, call);
}

result<pinned_address> egress_policy_step::check(std::string_view url) const {
    auto pin = check_(url);
    if (!pin) return pin.error();
    if (*pin) return std::move(**pin);
    // A hop check may approve an address literal without a pin (`hop_check`): the literal, read
    // as the egress check reads it, is the pin. Anything else goes out pinned or not at all.
    auto d = detail::read_destination(url);
    if (!d) return d.error();
    if (!d->literal) return error{errc::egress_denied, "the egress check approved " + d->host + " without an address to pin it to"};
    return pinned_address{d->host, d->port, d->literal->to_string()};
}

result<response> egress_policy_step::send(request& r, next_policy next, call_context& call) {
    auto pin = check(r.url);
    if (!pin) return pin.error();
    r.pin = std::move(*pin);
    return next.send(r, call);
}

void egress_policy_step::start(request& r, next_policy next, call_context& call, transport::completion done) {
    auto pin = check(r.url);
    if (!pin) return done(pin.error());
    r.pin = std::move(*pin);
    next.start(r, call, std::move(done));
}

namespace {

// The rest of the pipeline as a transport, for send_following_redirects.
class rest_as_transport final : public transport {
public:
    rest_as_transport(next_policy next, call_context& call) : next_(next), call_(call) {}
    result<response> send(request const& r) override {
        if (sends_++ > 0) call_.redirected = true;
        auto hop = r;
        auto res = next_.send(hop, call_);
        answered_ = answered_ || res.has_value();
        return res;
    }
    /** A hop was answered: every later failure comes after the vendor may have acted. */
    bool answered() const noexcept { return answered_; }

private:
    next_policy next_;
    call_context& call_;
    int sends_ = 0;
    bool answered_ = false;
};

void sleep_thread(milliseconds d) { std::this_thread::sleep_for(d); }

}  // namespace

result<response> redirect_policy::send(request& r, next_policy next, call_context& call) {
    if (options_.max_hops == 0) return next.send(r, call);
    rest_as_transport rest(next, call);
    auto res = send_following_redirects(rest, r, options_, check_, call.carries_credential);
    // A redirect whose next hop could not be checked (its name does not resolve) came from a
    // vendor that may have acted on the request: not "nothing was sent" (`unavailable`), but an
    // ending without a final answer, which only a request that may go twice is retried after.
    if (!res && rest.answered() && res.error() == errc::unavailable)
        return error{errc::connection_lost, "the vendor answered with a redirect, and " + res.error().detail()};
    return res;
}

void redirect_policy::start(request& r, next_policy next, call_context& call, transport::completion done) {
    if (options_.max_hops == 0) return next.start(r, call, std::move(done));
    done(send(r, next, call));
}

rate_limit_policy::rate_limit_policy(resilience::rate_limit_store& limits, rate_limit_policy_options options)
    : limits_(limits), options_(std::move(options)) {
    if (!options_.schedule) options_.schedule = waits_on(options_.sleep);
    if (!options_.sleep) options_.sleep = sleep_thread;
}

namespace {

// Our own budget is spent: answer as the vendor would, with the time to the next token.
response limited(resilience::acquire_result const& a) {
    return response{429, {{"Retry-After", std::to_string(duration_cast<seconds>(a.retry_after).count() + 1)}}, ""};
}

}  // namespace

void rate_limit_policy::start(request& r, next_policy next, call_context& call, transport::completion done) {
    if (!call.rate_limit) return next.start(r, call, std::move(done));
    auto a = limits_.try_acquire(call.rate_limit_key, *call.rate_limit);
    if (a.granted) return next.start(r, call, std::move(done));
    if (a.retry_after > options_.max_wait) return done(limited(a));
    options_.schedule(ceil<milliseconds>(a.retry_after), [this, &r, next, &call, done = std::move(done)]() mutable {
        go_on(call, [this, &r, next, &call, done = std::move(done)]() mutable {
            auto again = limits_.try_acquire(call.rate_limit_key, *call.rate_limit);
            if (again.granted) return next.start(r, call, std::move(done));
            done(limited(again));
        });
    });
}

result<response> rate_limit_policy::send(request& r, next_policy next, call_context& call) {
    if (!call.rate_limit) return next.send(r, call);
    auto a = limits_.try_acquire(call.rate_limit_key, *call.rate_limit);
    if (!a.granted && a.retry_after <= options_.max_wait) {
        options_.sleep(ceil<milliseconds>(a.retry_after));
        a = limits_.try_acquire(call.rate_limit_key, *call.rate_limit);
    }
    if (a.granted) return next.send(r, call);
    return limited(a);
}

result<response> circuit_breaker_policy::send(request& r, next_policy next, call_context& call) {
    if (!call.breaker) return next.send(r, call);
    // Committed before the breaker is asked: a call stopped then leaves no half-open probe behind.
    if (!commit(call)) return error{errc::cancelled, "the call was stopped before it was sent"};
    auto const permit = call.breaker->allow();
    if (!permit) return error{errc::unavailable, "circuit open: the destination failed repeatedly; calls resume after the "
                                                 "breaker's break duration"};
    result<response> res = error{errc::unavailable, "not sent"};
    try {
        res = next.send(r, call);
    } catch (...) {
        call.breaker->record(*permit, false);  // a probe that throws must not hold the breaker half-open for good
        throw;
    }
    call.breaker->record(*permit, res && res->status < 500);
    return res;
}

void circuit_breaker_policy::start(request& r, next_policy next, call_context& call, transport::completion done) {
    if (!call.breaker) return next.start(r, call, std::move(done));
    if (!commit(call)) return done(error{errc::cancelled, "the call was stopped before it was sent"});
    auto const permit = call.breaker->allow();
    if (!permit)
        return done(error{errc::unavailable, "circuit open: the destination failed repeatedly; calls resume after the "
                                             "breaker's break duration"});
    try {
        next.start(r, call, [breaker = call.breaker, permit = *permit, done = std::move(done)](result<response> res) {
            breaker->record(permit, res && res->status < 500);
            done(std::move(res));
        });
    } catch (...) {
        call.breaker->record(*permit, false);
        throw;
    }
}

retry_policy::retry_policy(integration::clock const& clock, retry_policy_options options)
    : clock_(clock), options_(std::move(options)) {
    if (!options_.schedule) options_.schedule = waits_on(options_.sleep);
    if (!options_.sleep) options_.sleep = sleep_thread;
    if (!options_.random)
        options_.random = [] {
            thread_local std::mt19937_64 rng{std::random_device{}()};
            return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
        };
}

std::optional<milliseconds> retry_policy::judge(request const& r, result<response>& res, int n, resilience::retry_options const& o,
                                                time_point first_start, time_point attempt_start, call_context& call) {
    // Whether it may be sent again once the vendor may have acted on it: whatever it is when it
    // never reached the transport, or when the last thing sent was answered 401 and the refresh
    // of the credential failed; after a redirect, only when its method is idempotent (another
    // origin gets no idempotency key).
    bool const repeatable = !call.sent || (!res && call.credential_unresolved) ||
                            (call.redirected ? is_idempotent_method(r.method) : r.repeatable);
    failures::attempt_outcome outcome{.repeatable = repeatable, .redirected = call.redirected};
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
    } else if (!res && call.credential_unresolved && call.failure &&
               (res.error() == errc::invalid_state || res.error() == errc::not_found || res.error() == errc::forbidden)) {
        // Revoked, gone, or refused by its token endpoint: the credential fails the same way at
        // every attempt until someone mends it. (A refused destination stays Poison, and an
        // endpoint that is down or slow stays Transient.)
        call.failure->category = failures::failure_category::auth;
        call.failure->error_code = "credential_unusable";
        call.failure->next_action = failures::next_action::escalate;
        call.failure->next_attempt_at.reset();
    }
    if (call.on_attempt) call.on_attempt({n, &res, call.sent, call.failure, attempt_start, now});
    if (!call.failure || call.failure->next_action != failures::next_action::retry || n >= o.max_attempts) return std::nullopt;
    return duration_cast<milliseconds>(*call.failure->next_attempt_at - now);
}

result<response> retry_policy::send(request& r, next_policy next, call_context& call) {
    auto const& o = call.retry ? *call.retry : options_.retry;
    auto const first_start = clock_.now();
    for (int n = 1;; ++n) {
        auto const attempt_start = clock_.now();
        call.sent = false;
        call.credential_unresolved = false;
        call.redirected = false;
        auto res = next.send(r, call);
        if (call.stopped) return res;
        auto wait = judge(r, res, n, o, first_start, attempt_start, call);
        if (!wait) return res;
        options_.sleep(*wait);
    }
}

/** A started call between its attempts. */
struct retry_policy::pending {
    request& r;
    next_policy next;
    call_context& call;
    transport::completion done;
    resilience::retry_options const o;
    time_point const first_start;
    int n = 0;
    time_point attempt_start{};
};

void retry_policy::start(request& r, next_policy next, call_context& call, transport::completion done) {
    auto o = call.retry ? *call.retry : options_.retry;
    attempt(std::make_shared<pending>(pending{r, next, call, std::move(done), o, clock_.now()}));
}

void retry_policy::attempt(std::shared_ptr<pending> p) {
    ++p->n;
    p->attempt_start = clock_.now();
    p->call.sent = false;
    p->call.credential_unresolved = false;
    p->call.redirected = false;
    auto const next = p->next;
    auto& r = p->r;
    auto& call = p->call;
    next.start(r, call, [this, p = std::move(p)](result<response> res) mutable {
        if (p->call.stopped) return p->done(std::move(res));
        auto wait = judge(p->r, res, p->n, p->o, p->first_start, p->attempt_start, p->call);
        if (!wait) return p->done(std::move(res));
        options_.schedule(*wait, [this, p = std::move(p)]() mutable {
            auto& call = p->call;
            go_on(call, [this, p = std::move(p)]() mutable { attempt(std::move(p)); });
        });
    });
}

}  // namespace integration::http
