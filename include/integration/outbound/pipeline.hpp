#ifndef INTEGRATION_OUTBOUND_PIPELINE_HPP
#define INTEGRATION_OUTBOUND_PIPELINE_HPP

/** @file
 *  The outbound pipeline: every call the library makes to a vendor (runs, health probes, token and
 *  managed-identity requests) passes ordered policies, then the transport port. A new concern is a
 *  new policy, never a new hand-written call chain in a service.
 *
 *  The usual order, as in Azure SDK core (per-call policies, retry, per-retry policies, transport):
 *  `trace_context_policy`, `retry_policy`, `egress_policy_step`, `rate_limit_policy`,
 *  `circuit_breaker_policy`, authentication (`credentials::authentication_policy`),
 *  `redirect_policy`, then the transport. A policy whose per-call setting is absent in the
 *  `call_context` passes the request on untouched.
 *
 *  Each call can also be started (`pipeline::start`): the built-in policies then hold no thread
 *  while the transport waits for the vendor (`transport::start`) or while a wait between attempts
 *  or for a rate-limit token runs out (a `scheduler`), so many calls share a few threads.
 */

#include <integration/core/context.hpp>
#include <integration/domain/failure.hpp>
#include <integration/domain/policies.hpp>
#include <integration/export.hpp>
#include <integration/outbound/circuit_breaker.hpp>
#include <integration/outbound/egress_policy.hpp>
#include <integration/outbound/redirects.hpp>
#include <integration/outbound/retry.hpp>
#include <integration/outbound/token_bucket.hpp>
#include <integration/ports/transport.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace integration::http {

/** One attempt as the retry policy saw it, for a caller that records attempts. */
struct attempt_report {
    int number = 1;                 ///< 1-based, within this call.
    result<response> const* outcome = nullptr;  ///< The answer or the error of the attempt.
    bool sent = false;              ///< The request reached the transport (not refused or limited first).
    std::optional<failures::classification> failure;  ///< None for a success.
    time_point started{};
    time_point ended{};
};

/** What one call carries through the pipeline besides the request: who calls, which per-call
 *  settings apply (each optional: a policy without its setting passes the request on), and what
 *  the policies report back. */
struct call_context {
    request_context const* ctx = nullptr;             ///< Tenant and trace; none for a call of no tenant.
    std::optional<std::string> credential_id;         ///< Authentication: the credential to apply.
    std::string_view rate_limit_key;                  ///< Rate limit: the bucket (tenant/provider/connection).
    std::optional<rate_limit_profile> rate_limit;     ///< Rate limit: the budget of that bucket.
    resilience::circuit_breaker* breaker = nullptr;   ///< Circuit breaker of the destination.
    std::optional<resilience::retry_options> retry;   ///< Replaces the retry policy's defaults for this call.
    /** Called once, right before the request first goes out: after the egress check and the
     *  rate-limit token, before the circuit breaker is asked. False ends the call unsent and not
     *  retried (`stopped`); the hook keeps its own reason. */
    std::function<bool()> before_first_send;
    /** Called after every attempt of the retry policy. */
    std::function<void(attempt_report const&)> on_attempt;
    /** Where a started call goes on when its next step may block (a token fetched again, a DNS
     *  lookup, a remote rate-limit store, a redirect): after a retry's or a rate limit's wait,
     *  which ends on the timer's thread, and after a 401's token refresh, which begins on the
     *  transport's. Unset: on that thread, which every other started call then waits for. */
    std::function<void(std::function<void()> step)> offload;
    /** Set by the authentication step while its material is applied: true when a text holds one
     *  of the credential's secrets (in any form the answer is redacted in). A redirect to another
     *  origin whose URL carries one is refused. */
    std::function<bool(std::string_view text)> carries_credential;

    // Reported by the policies.
    bool sent = false;                                ///< The last attempt reached the transport.
    bool stopped = false;                             ///< `before_first_send` refused the call.
    bool credential_unresolved = false;               ///< The credential's material did not resolve.
    /** The last attempt followed a redirect: the vendor may have acted on the request whatever
     *  its last hop answered, and the hops may have dropped its idempotency key. */
    bool redirected = false;
    std::optional<failures::classification> failure; ///< The retry policy's verdict on the last attempt.
};

class policy;

/** Runs `fn` once `delay` has passed, without holding the calling thread. */
using scheduler = std::function<void(std::chrono::milliseconds delay, std::function<void()> fn)>;

/** Runs `step` through `call.offload`, or at once when the call has none. */
INTEGRATION_EXPORT void go_on(call_context& call, std::function<void()> step);

/** The scheduler of the policies' waits: `sleep`, when given (tests pass one that advances a
 *  manual clock), sleeps on the calling thread and then runs the function; else one timer thread
 *  shared by the process runs it when due. */
INTEGRATION_EXPORT scheduler waits_on(std::function<void(std::chrono::milliseconds)> sleep);

/** The rest of the pipeline after a policy: the policies behind it, then the transport. */
class INTEGRATION_EXPORT next_policy {
public:
    next_policy(std::span<std::unique_ptr<policy> const> rest, transport& t) noexcept : rest_(rest), transport_(t) {}
    /** Sends `r` through the rest of the pipeline. */
    result<response> send(request& r, call_context& call) const;
    /** Starts `r` through the rest of the pipeline; `done` runs once with the outcome. `r` and
     *  `call` must live until then. */
    void start(request& r, call_context& call, transport::completion done) const;

private:
    std::span<std::unique_ptr<policy> const> rest_;
    transport& transport_;
};

/** One concern of an outbound call. Implementations are thread-safe: one pipeline serves many
 *  calls at once, and per-call state lives in the `call_context`. */
class INTEGRATION_EXPORT policy {
public:
    virtual ~policy() = default;
    /** Handles `r` and passes it on with `next.send(r, call)` (zero, one or several times). */
    virtual result<response> send(request& r, next_policy next, call_context& call) = 0;
    /** The asynchronous form of `send`: passes `r` on with `next.start` and calls `done` once.
     *  The default runs `send` on the calling thread (the rest of the pipeline then waits on it);
     *  a policy that waits overrides it. */
    virtual void start(request& r, next_policy next, call_context& call, transport::completion done);
};

/** Ordered policies in front of a transport.
 *
 *  @par Example
 *  @code
 *  std::vector<std::unique_ptr<http::policy>> policies;
 *  policies.push_back(std::make_unique<http::trace_context_policy>());
 *  policies.push_back(std::make_unique<http::egress_policy_step>(egress_hop_check(net::egress_policy{}, dns)));
 *  http::pipeline outbound(*curl, std::move(policies));
 *  http::request req{.url = "https://api.vendor.example/v1/ping"};
 *  http::call_context call{.ctx = &ctx};
 *  auto res = outbound.send(req, call);
 *  @endcode
 */
class INTEGRATION_EXPORT pipeline {
public:
    /** `transport` must outlive the pipeline. */
    pipeline(transport& transport, std::vector<std::unique_ptr<policy>> policies);
    pipeline(pipeline&&) noexcept = default;

    /** Sends `r` through every policy, then the transport. Policies may change `r` (a pin, a
     *  header); pass a copy to keep the original. */
    result<response> send(request& r, call_context& call) const;
    /** Starts `r` through every policy, then `transport::start`, and returns; `done` runs once
     *  with the outcome, on the transport's or the scheduler's thread (or this one when the call
     *  ends before it is sent). `r` and `call` must live until `done` runs. */
    void start(request& r, call_context& call, transport::completion done) const;

private:
    transport* transport_;
    std::vector<std::unique_ptr<policy>> policies_;
};

/** Adds a W3C `traceparent` (a child span of `call.ctx->trace`) unless the request has one. */
class INTEGRATION_EXPORT trace_context_policy final : public policy {
public:
    result<response> send(request& r, next_policy next, call_context& call) override;
    void start(request& r, next_policy next, call_context& call, transport::completion done) override;
};

/** The egress guard: checks `r.url` with the hop check (egress policy and one resolution) and
 *  pins the checked address into `r.pin`, so that a second DNS answer cannot rebind the
 *  connection. A refused destination is `errc::egress_denied` and nothing behind this policy
 *  runs (no token, no breaker, no credential, no byte sent). */
class INTEGRATION_EXPORT egress_policy_step final : public policy {
public:
    explicit egress_policy_step(hop_check check) : check_(std::move(check)) {}
    result<response> send(request& r, next_policy next, call_context& call) override;
    void start(request& r, next_policy next, call_context& call, transport::completion done) override;
    /** Where a call to `url` would connect, or why it is refused; sends nothing. */
    result<pinned_address> check(std::string_view url) const;

private:
    hop_check check_;
};

/** Follows redirects (`options.max_hops`, off by default), every hop checked and pinned again by
 *  the hop check; see `send_following_redirects`. */
class INTEGRATION_EXPORT redirect_policy final : public policy {
public:
    redirect_policy(hop_check check, redirect_options options) : check_(std::move(check)), options_(options) {}
    result<response> send(request& r, next_policy next, call_context& call) override;
    /** Without redirects the call passes on; following them holds the calling thread. */
    void start(request& r, next_policy next, call_context& call, transport::completion done) override;

private:
    hop_check check_;
    redirect_options options_;
};

/** Options of the rate-limit policy. */
struct rate_limit_policy_options {
    std::chrono::milliseconds max_wait{1'000};  ///< Wait this long for a token, else answer 429.
    std::function<void(std::chrono::milliseconds)> sleep;  ///< Defaults to sleeping the thread.
    scheduler schedule;  ///< The wait of `start`; defaults to `waits_on(sleep)`.
};

/** Takes a token from `call.rate_limit_key`'s bucket sized by `call.rate_limit`, waiting up to
 *  `max_wait`. When the budget stays spent it answers for the vendor: a 429 with `Retry-After`
 *  (seconds until the next token), which the retry policy treats as the vendor's own. */
class INTEGRATION_EXPORT rate_limit_policy final : public policy {
public:
    rate_limit_policy(resilience::rate_limit_store& limits, rate_limit_policy_options options = {});
    result<response> send(request& r, next_policy next, call_context& call) override;
    void start(request& r, next_policy next, call_context& call, transport::completion done) override;

private:
    resilience::rate_limit_store& limits_;
    rate_limit_policy_options options_;
};

/** Refuses the call (`errc::unavailable`) while `call.breaker` is open; records every allowed
 *  call (a transport error or a 5xx is a failure). */
class INTEGRATION_EXPORT circuit_breaker_policy final : public policy {
public:
    result<response> send(request& r, next_policy next, call_context& call) override;
    void start(request& r, next_policy next, call_context& call, transport::completion done) override;
};

/** Options of the retry policy. */
struct retry_policy_options {
    resilience::retry_options retry{};                   ///< Defaults; `call.retry` replaces them.
    std::function<void(std::chrono::milliseconds)> sleep;  ///< Defaults to sleeping the thread.
    std::function<double()> random;                      ///< In [0, 1), for jitter; defaults to a PRNG.
    scheduler schedule;  ///< The waits of `start`; defaults to `waits_on(sleep)`.
};

/** Sends the rest of the pipeline again while `failures::classify` says retry (retryable status
 *  or transport error, the server's `Retry-After` winning over backoff) and attempts and the
 *  total deadline allow. A call the caller cancelled is never retried (Validation, `cancelled`).
 *  `call.on_attempt` sees every attempt and `call.failure` holds the last verdict. */
class INTEGRATION_EXPORT retry_policy final : public policy {
public:
    retry_policy(integration::clock const& clock, retry_policy_options options = {});
    result<response> send(request& r, next_policy next, call_context& call) override;
    void start(request& r, next_policy next, call_context& call, transport::completion done) override;

private:
    struct pending;
    /** Judges attempt `n` of `r`, whose outcome is `res`: how long to wait before the next
     *  attempt, or none when `res` is the call's outcome. */
    std::optional<std::chrono::milliseconds> judge(request const& r, result<response>& res, int n, resilience::retry_options const& o,
                                                   time_point first_start, time_point attempt_start, call_context& call);
    void attempt(std::shared_ptr<pending> p);

    integration::clock const& clock_;
    retry_policy_options options_;
};

}  // namespace integration::http

#endif
