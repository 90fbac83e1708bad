#ifndef INTEGRATION_RUNS_RUN_SERVICE_HPP
#define INTEGRATION_RUNS_RUN_SERVICE_HPP

/** @file
 *  Governed runs: execute one operation of a connection's provider through its Active API client,
 *  with credentials resolved at call time, egress checks with a pinned address, a per-key rate
 *  limiter, a per-connection circuit breaker, classified retries, bodies in the blob store and the
 *  outcome recorded as an IntegrationRun (and IntegrationFailure) through the outbox.
 */

#include <integration/blobs/blob_store.hpp>
#include <integration/credentials/credential_service.hpp>
#include <integration/failures/classifier.hpp>
#include <integration/net/egress_policy.hpp>
#include <integration/resilience/circuit_breaker.hpp>
#include <integration/resilience/token_bucket.hpp>
#include <integration/runs/run.hpp>

#include <boost/json/object.hpp>

#include <functional>
#include <map>
#include <memory>
#include <mutex>

namespace integration::runs {

/** The caller's input: `{name}` values for the path template, query parameters, extra headers, body. */
struct run_input {
    std::map<std::string, std::string> path_params;
    std::vector<std::pair<std::string, std::string>> query;
    http::headers headers;
    std::string body;
};

/** One operation to execute. */
struct execute_request {
    std::string connection_id;
    std::string operation;  ///< A ClientOperation of the provider's Active API client.
    run_input input;
    std::optional<std::string> idempotency_key;  ///< The same key returns the same run, no second call.
    bool allow_degraded = false;                 ///< Permit a Degraded connection.
};

/** A finished run and the vendor's last answer (when there was one). */
struct run_outcome {
    integration_run run;
    std::optional<http::response> response;
    bool replayed = false;  ///< True when an earlier run with the same Idempotency-Key was returned.
};

/** Options of the run service. */
struct run_service_options {
    resilience::retry_options retry{};
    std::chrono::milliseconds attempt_timeout{10'000};
    resilience::breaker_options breaker{};
    std::chrono::milliseconds max_rate_limit_wait{1'000};  ///< Wait this long for a token, else fail fast.
    /** How runs and their bodies are recorded. `deferred` lets many runs share one fsync (process
     *  crashes lose nothing; a power loss may lose the store's last flush interval). */
    durability recording = durability::immediate;
    /** Waits between attempts; tests pass one that advances a manual clock. */
    std::function<void(std::chrono::milliseconds)> sleep;
    /** Random numbers in [0, 1) for jitter. */
    std::function<double()> random;
};

/** Executes governed runs. Thread-safe. */
class run_service {
public:
    run_service(storage::store& store, credentials::credential_service& credentials, blobs::blob_store& blobs,
                http::transport& transport, net::egress_policy egress, net::resolver& resolver, clock const& clock,
                run_service_options options = {});

    /** Executes `request` synchronously. Bad input (unknown operation, missing path parameter, a
     *  connection that may not run) is an error and records nothing; a vendor failure is a Failed
     *  run with its classified IntegrationFailure. */
    result<run_outcome> execute(request_context const& ctx, execute_request request);

private:
    struct plan {
        connections::integration_connection connection;
        providers::integration_provider provider;
        providers::client_operation op;
        std::optional<rate_limit_profile> limit;
        std::string url;
    };
    result<plan> prepare(request_context const& ctx, execute_request const& r);
    resilience::circuit_breaker& breaker(std::string const& connection_id);
    /** Takes a rate-limit token, waiting up to `max_rate_limit_wait`; else how long until one is there. */
    std::optional<std::chrono::nanoseconds> take_token(std::string const& key, plan const& p);
    result<run_outcome> replay(request_context const& ctx, integration_run run);

    storage::store& store_;
    credentials::credential_service& credentials_;
    blobs::blob_store& blobs_;
    http::transport& transport_;
    net::egress_policy egress_;
    net::resolver& resolver_;
    clock const& clock_;
    run_service_options options_;
    resilience::rate_limiter limiter_;
    std::mutex breakers_mutex_;
    std::map<std::string, std::unique_ptr<resilience::circuit_breaker>> breakers_;
};

}  // namespace integration::runs

#endif
