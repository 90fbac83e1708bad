#ifndef INTEGRATION_SERVICES_RUN_SERVICE_HPP
#define INTEGRATION_SERVICES_RUN_SERVICE_HPP

/** @file
 *  Governed runs: execute one operation of a connection's provider through its Active API client,
 *  with credentials resolved at call time, egress checks with a pinned address, a per-key rate
 *  limiter, a per-connection circuit breaker, classified retries, bodies in the blob store and the
 *  outcome recorded as an IntegrationRun (and IntegrationFailure) through the outbox.
 */

#include <integration/ports/blob_store.hpp>
#include <integration/services/credential_service.hpp>
#include <integration/outbound/classifier.hpp>
#include <integration/outbound/pipeline.hpp>
#include <integration/domain/run.hpp>
#include <integration/export.hpp>

#include <boost/json/object.hpp>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace integration::detail {
class fair_pool;
}

namespace integration::runs {

/** The caller's input: `{name}` values for the path template, query parameters, extra headers, body.
 *  Each path parameter fills one path segment, percent-encoded (`/`, `\` and `%` too); `.` and
 *  `..` are refused. A header must pass `http::check_header_field` (no framing or routing field,
 *  no CR, LF or NUL) and may not use the name the connection's credential is sent in, nor may a
 *  query parameter; such input is refused before anything is recorded.
 *  A run that waits for a later retry keeps its input in the blob store; one whose headers carry
 *  a credential of the caller's (`Authorization`, `Cookie`, API-key headers) does not wait: such
 *  a header is kept nowhere, so its run fails when the attempts of its execution run out. */
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
    /** The same key with the same request returns the same run, no second call; with another
     *  request (connection, operation or any part of the input) it is `errc::idempotency_key_reused`. */
    std::optional<std::string> idempotency_key;
    bool allow_degraded = false;                 ///< Permit a Degraded connection.
    std::shared_ptr<http::cancellation const> cancel;  ///< Cancels the vendor call in flight.
};

/** A finished run and the vendor's last answer (when there was one). */
struct run_outcome {
    integration_run run;
    std::optional<http::response> response;
    bool replayed = false;  ///< True when an earlier run with the same Idempotency-Key was returned.
    /** The IntegrationFailure recorded for a Failed run, or for a Running one waiting for the retry
     *  worker. */
    std::optional<std::string> failure_id;
};

/** Why `run_service::resume` executes a run again. */
enum class resume_reason {
    due,          ///< Its failure's next attempt came due.
    /** An earlier resume of it stopped unfinished (its worker's lease ran out): that resume may
     *  have called the vendor. */
    interrupted,
};

/** Options of the run service. */
struct run_service_options {
    /** Attempts of one execution and the waits between them. `retry.total_deadline` bounds how
     *  long one execution may wait inline: no attempt starts later than that after the first, so a
     *  wait (backoff, a vendor's Retry-After, our own rate limit) that would end past it is not
     *  waited for; the run waits for the retry worker instead (see `deferred_retries`). */
    resilience::retry_options retry{};
    std::chrono::milliseconds attempt_timeout{10'000};
    resilience::breaker_options breaker{};
    std::chrono::milliseconds max_rate_limit_wait{1'000};  ///< Wait this long for a token, else fail fast.
    /** Where the token buckets live; null keeps them in this service. Pass one store to several
     *  services (or a shared backend) so that they share each connection's budget. */
    resilience::rate_limit_store* rate_limits = nullptr;
    /** How runs and their bodies are recorded. `deferred` lets many runs share one fsync (process
     *  crashes lose nothing; a power loss may lose the store's last flush interval) and records a
     *  run without an idempotency key once, when it ends, instead of also when it starts. */
    durability recording = durability::immediate;
    /** When the attempts of one execution run out on a retryable failure, the run stays Running
     *  and the retry worker executes it again, up to this many times, before it fails and the
     *  failure is escalated. 0 fails the run at once (dead letter). */
    int deferred_retries = 3;
    /** How long the connection → API client binding of an operation is reused without reading
     *  the store. A connection retired or made Degraded, its credential revoked, or a client
     *  deprecated takes effect within this time. */
    std::chrono::milliseconds binding_cache_ttl{1'000};
    /** Redirects of the vendor's answers, each hop re-checked by the egress policy; off by default. */
    http::redirect_options redirects{};
    /** Threads of `execute_async` and of the steps a call hands off (the attempt after a retry's
     *  wait); one tenant's jobs take at most half of them, so its slow lookups or token
     *  endpoint hold no other tenant's runs. */
    std::size_t async_threads = 4;
    /** Record finished runs without waiting for the commit (`store::transact_async`, which shares
     *  group commits with every concurrent writer): `execute` returns once the vendor answered,
     *  with the run as it will be recorded, and `flush()` waits for the records. Runs not yet
     *  committed are lost if the process dies; the form of `execute` that takes a handler reports
     *  a run only once its record is committed. A run without an Idempotency-Key is then written
     *  once, when it ends, with its bodies up to `inline_body_bytes` in the same unit; one with a
     *  key is written Running before its first call, as without write-behind. */
    bool write_behind = false;
    std::size_t write_behind_queue = 10'000;  ///< `execute` waits while this many are not committed.
    /** With `write_behind`, bodies up to this size are kept in the store with the run's record
     *  (`storage::stored_run_body_ref`: no blob write and no fsync of their own); larger ones go to
     *  the blob store, written before the commit that refers to them. */
    std::size_t inline_body_bytes = 64 * 1024;
    /** Waits between attempts; tests pass one that advances a manual clock. None (the default):
     *  `execute` sleeps its thread, and a run started with a handler waits on a timer, holding
     *  no thread. */
    std::function<void(std::chrono::milliseconds)> sleep;
    /** Random numbers in [0, 1) for jitter. */
    std::function<double()> random;
    /** How long `execute` waits for the outcome of a run with the same Idempotency-Key that is
     *  still executing (in this service, or in another process sharing the store) before it gives
     *  up with `errc::in_progress`. */
    std::chrono::milliseconds idempotency_wait{5'000};
    /** Added to the longest one execution can take to make `run_lease()`: it covers token
     *  requests, waits for the store and clocks that differ between processes. */
    std::chrono::milliseconds orphan_margin{30'000};
};

/** Checks options a run service cannot work with: no attempt, a timeout that is not a deadline,
 *  a negative wait or count, an empty write-behind queue. `open_platform` refuses them; a run
 *  service built with them refuses every run, naming the option. */
INTEGRATION_EXPORT result<void> validate(run_service_options const& options);

/** Executes governed runs. Thread-safe. */
class INTEGRATION_EXPORT run_service {
public:
    run_service(storage::store& store, credentials::credential_service& credentials, blobs::blob_store& blobs,
                http::transport& transport, net::egress_policy egress, net::resolver& resolver, clock const& clock,
                run_service_options options = {});

    run_service(run_service const&) = delete;
    run_service& operator=(run_service const&) = delete;
    ~run_service();

    /** Executes `request` synchronously. Bad input (unknown operation, missing path parameter, a
     *  connection that may not run) is an error and records nothing; a vendor failure is a Failed
     *  run with its classified IntegrationFailure, or a Running one that the retry worker will
     *  execute again (see `deferred_retries`).
     *
     *  The run is written (Running) right before its first call to the vendor, so a process that
     *  stops earlier leaves nothing behind and the same Idempotency-Key executes anew. With an
     *  Idempotency-Key whose run is still executing, here or in another process, `execute` waits
     *  up to `idempotency_wait` for its outcome and returns that (`replayed`), else
     *  `errc::in_progress`: the vendor is called once per key. The key is claimed for the
     *  request (a SHA-256 of all its parts) in the unit that writes its run: the key again with a
     *  different request is `errc::idempotency_key_reused`, and a request refused before its run
     *  was written (bad input) leaves the key free.
     *
     *  @par Example
     *  @code
     *  auto out = runs.execute(ctx, {.connection_id = conn, .operation = "sms.send",
     *                                .input = {.path_params = {{"account", "AC1"}}, .body = R"({"to":"+15550100"})"},
     *                                .idempotency_key = "order-42"});
     *  if (out && out->run.status() == runs::run_status::completed) use(out->response->body);
     *  @endcode
     */
    result<run_outcome> execute(request_context const& ctx, execute_request request);

    /** Called once with the outcome of a run. */
    using outcome_handler = std::function<void(result<run_outcome>)>;

    /** Executes `request` like `execute` and calls `done` with the outcome once the run is
     *  recorded with `recording` durability (`durability::immediate`: on disk), so an answer built
     *  in `done` is never lost with the process. The calling thread checks the request, writes
     *  what must be written before the call (a keyed run's Running row) and starts the vendor
     *  call (`http::pipeline::start`), then returns: no thread waits for the vendor or between
     *  attempts. With `write_behind` the run then goes to the store's writer
     *  (`store::transact_async`: its commit is shared with every concurrent unit); a run with an Idempotency-Key, and any run without
     *  `write_behind`, is recorded by one of the service's threads. `done` runs on the store's writer, a thread of
     *  the service or the transport (keep it short: render an answer elsewhere), or on the calling thread when the request ends
     *  before its call (bad input, a replayed key). A second request with the Idempotency-Key of
     *  a run executing here holds no thread either: its `done` gets that run's outcome
     *  (`replayed`) once it is recorded, or `errc::in_progress` after `idempotency_wait`. A run
     *  that could not be recorded is reported as the store's error. */
    void execute(request_context const& ctx, execute_request request, outcome_handler done);

    /** True when `execute(ctx, request, done)` would start the vendor call without blocking the
     *  calling thread, so that a caller on an event loop may call it there: no Idempotency-Key,
     *  `write_behind` with a body kept with the record, the connection's binding and credential
     *  material cached (for at least 100 ms more), a literal address to call (no name to resolve), this service's own
     *  rate limiter, no `sleep` and no redirects to follow. False means only that it might block. */
    bool starts_without_blocking(request_context const& ctx, execute_request const& request);

    /** Drops the cached bindings of a retired connection (the next run reads it again, so the
     *  retirement counts at once instead of within `binding_cache_ttl`) and its circuit breaker. */
    void forget(std::string const& connection_id);

    /** Executes `request` on one of the service's own threads. */
    std::future<result<run_outcome>> execute_async(request_context ctx, execute_request request);

    /** Executes a Running run again after a retryable failure (what the retry worker calls): more
     *  attempts on the same run, then the run completes (the failure is resolved), waits for the
     *  next retry, or fails (the failure is escalated, or resolved as dead-lettered). A run that
     *  already ended only resolves its open failure. After `resume_reason::interrupted` a request
     *  that could act twice (a `POST` or `PATCH` with neither the operation's idempotency header
     *  nor a caller's `Idempotency-Key`) is not sent: the run fails and its failure escalates
     *  (`interrupted`), for a person to check with the vendor. `called_vendor`, when given, is
     *  set once the vendor may have been called: an error after that left the outcome unrecorded. */
    result<run_outcome> resume(request_context const& ctx, std::string const& run_id, resume_reason why = resume_reason::due,
                               bool* called_vendor = nullptr);

    /** Ends the runs of `ctx`'s tenant that a stopped process left Running: a run with no retry
     *  pending that started longer than `run_lease()` ago, and that this service is not executing,
     *  cannot still be executing anywhere. It fails with a Transient IntegrationFailure
     *  (`interrupted`, to Escalate: the vendor may or may not have acted on the last call),
     *  recorded through the outbox like every other ending. Several processes may call it at once.
     *  Returns how many runs it ended. The retry worker calls it on every sweep. */
    result<std::size_t> recover_interrupted(request_context const& ctx);

    /** How long after it started a run may still be executing: `retry.total_deadline`, then one
     *  more rate-limit wait and attempt (twice `attempt_timeout`: a bearer credential refreshed
     *  after a 401 sends again), plus `orphan_margin`. Processes that share a store should use
     *  the same options, or the shortest lease may end another's run early. */
    std::chrono::milliseconds run_lease() const noexcept;

    /** The circuit breaker of every connection this service has called, by connection id. */
    std::vector<std::pair<std::string, resilience::breaker_state>> breaker_states();

    /** Waits until every run queued by `write_behind` is recorded; reports runs that could not be. */
    result<void> flush();

private:
    /** What a connection and operation resolve to: immutable, shared by the runs that hit the
     *  binding cache, so a run copies no aggregate. */
    struct bound {
        connections::integration_connection connection;
        providers::integration_provider provider;
        providers::client_operation op;
        credentials::material_placement credential;  ///< Names the caller's input may not use.
        std::optional<rate_limit_profile> limit;
        std::string limit_key;  ///< The rate-limit partition: tenant/provider/connection.
        /** Shared with `breakers_`: a call in flight keeps it after its connection is forgotten. */
        std::shared_ptr<resilience::circuit_breaker> breaker;
        resilience::retry_options retry;  ///< The service's, or the connection's retryPolicy.
        std::string base_url;             ///< The connection's base URL for the operation's class.
        bool literal_address = false;     ///< `base_url` names an allowed literal address (no lookup to call it).
    };
    struct plan {
        std::shared_ptr<bound const> b;
        std::string url;
    };
    struct binding {
        std::shared_ptr<bound const> b;
        time_point expires;
    };
    /** How one execution ended, before it is recorded. */
    struct ending {
        request_context ctx;
        integration_run run;
        std::optional<failures::classification> failure;
        std::optional<http::response> last;
        bool wait_for_worker = false;
        time_point now;
    };
    /** A finished run recorded behind (`write_behind`), built before it goes to the store's writer. */
    struct record {
        storage::prepared_run run;  ///< The run and its outbox rows, built before the commit.
        std::optional<failures::integration_failure> failure;
        std::optional<http::response> response;  ///< Its body is kept in the store when its responseRef says so.
        std::string request_body;                ///< Kept in the store under the run's requestRef when not stored yet.
        outcome_handler done;                    ///< Told the outcome once the run is committed.
    };
    struct attempts_result {
        std::optional<http::response> last;
        std::optional<failures::classification> failure;
        std::optional<error> claim_failed;  ///< The run could not be written before its first call.
    };
    /** Writes a run right before its first call (and may replace it with the stored copy). */
    using claim_fn = std::function<result<void>(integration_run&)>;
    /** A request with a handler waiting for the flight of its Idempotency-Key, holding no thread. */
    struct twin {
        request_context ctx;
        execute_request request;
        outcome_handler done;
        std::atomic<bool> told = false;  ///< By the flight's landing or by the end of its wait, whichever is first.
    };
    /** An execution of one Idempotency-Key in this service; executions of the same key wait for it. */
    struct flight {
        std::mutex mutex;
        std::condition_variable done_cv;  // synchronous twins wait on it
        bool done = false;
        std::optional<run_outcome> outcome;  ///< None when it recorded no run (bad input, a store error).
        std::vector<std::shared_ptr<twin>> twins;
        std::string digest;  ///< Of the request it executes: a twin asking something else is refused.
    };
    using steady_time = std::chrono::steady_clock::time_point;
    /** One execution from its start to its record: owns what its vendor call points into. */
    struct execution {
        request_context ctx;
        execute_request r;
        plan p;
        integration_run run;
        http::request req{};
        http::call_context call{};
        attempts_result out{};
        claim_fn claim{};
        steady_time wait_until{};
        std::string digest{};      ///< Of the request, when it has an Idempotency-Key: what the key is claimed for.
        bool behind = false;       ///< Recorded behind (`write_behind`).
        bool body_behind = false;  ///< Its request body too.
        std::string executing{};   ///< The run id while it is in `executing_`.
        outcome_handler done{};    ///< Told the outcome (by `report`, or once its record behind committed).
    };
    /** Checks and prepares `r`: an execution ready to `arm`, or none with `settled` set to the
     *  outcome at once (a replay of its Idempotency-Key). `handler`: the outcome goes to a handler. */
    result<std::shared_ptr<execution>> open(request_context const& ctx, execute_request r, steady_time wait_until,
                                            bool handler, std::optional<run_outcome>& settled);
    void arm(execution& e);
    void collect(execution& e, result<http::response> res);
    /** Records the execution's ending (behind, with `e.done`, when `e.behind`). */
    result<run_outcome> close(execution& e);
    /** `open`, then the vendor call started; `done` gets the outcome once recorded. */
    void start_once(request_context const& ctx, execute_request r, steady_time wait_until, outcome_handler done);
    void report(execution& e, result<run_outcome> out);
    /** One started execution less in flight. */
    void landed();
    /** Runs `job` on the async threads behind `tenant`'s earlier jobs. */
    void post(std::string const& tenant, std::function<void()> job);
    /** The flight of `key`, opened when there is none; true when this call opened it (its owner). */
    std::pair<std::shared_ptr<flight>, bool> join_flight(std::string const& key, std::string const& digest);
    static error key_reused(std::string const& key);
    /** Claims `key` for the request of `digest`, or `errc::idempotency_key_reused`. */
    result<void> claim_key(request_context const& ctx, std::string const& key, std::string const& digest);
    /** Ends the flight of `key` with `out`: its twins take it. */
    void land(std::string const& key, flight& f, result<run_outcome> const& out);
    /** A twin whose flight recorded no run executes itself, on the service's threads. */
    void retry_twin(std::shared_ptr<twin> t);
    /** `done` (may be null): taken when the record behind will report the outcome, else left as is. */
    result<run_outcome> execute_keyed(request_context const& ctx, execute_request& r, outcome_handler* done);
    result<run_outcome> execute_once(request_context const& ctx, execute_request const& r, steady_time wait_until,
                                     outcome_handler* done);
    /** What a request gets for the earlier run of its Idempotency-Key: the run when it ended or waits
     *  for the retry worker; while it executes elsewhere, its outcome once there (or
     *  `errc::in_progress` at `wait_until`). */
    result<run_outcome> settle(request_context const& ctx, integration_run run, steady_time wait_until);
    std::optional<integration_run> find_by_key(request_context const& ctx, std::string const& key);
    /** True when `run` (Running) started past its lease and is not executing here. */
    bool lease_expired(integration_run const& run);
    /** Fails a Running run left by a stopped process; none when it no longer needs it (it ended, or
     *  waits for the retry worker). */
    result<std::optional<integration_run>> fail_interrupted(request_context const& ctx, integration_run const& run);
    result<plan> prepare(request_context const& ctx, execute_request const& r);
    result<std::shared_ptr<bound const>> bind(request_context const& ctx, execute_request const& r);
    static std::string binding_key(request_context const& ctx, execute_request const& r);
    /** The cached binding of `key`, if still fresh at `now`. */
    std::shared_ptr<bound const> cached_binding(std::string const& key, time_point now);
    attempts_result attempt(request_context const& ctx, plan const& p, execute_request const& r, integration_run& run);
    /** Keeps the input for the retry worker; false when the blob store refused it. */
    bool keep_input(request_context const& ctx, integration_run const& run, execute_request const& r);
    static bool retryable(failures::classification const& c);
    void defer(failures::classification& c, integration_run const& run, std::optional<http::response> const& last,
               resilience::retry_options const& retry);
    result<execute_request> stored_input(request_context const& ctx, integration_run const& run);
    std::optional<std::string> store_response(request_context const& ctx, integration_run const& run,
                                              std::optional<http::response> const& last);
    /** Puts `last`'s body in the run's row when `ref` says it is kept there (a body the blob
     *  store refused), in the unit that saves the run. */
    static result<void> keep_stored_response(storage::unit_of_work& uow, integration_run const& run,
                                             std::optional<std::string> const& ref, std::optional<http::response> const& last);
    /** Completes or fails `run` as `e` says; returns the IntegrationFailure to save with it. */
    static result<std::optional<failures::integration_failure>> finalize(ending const& e, integration_run& run,
                                                                         std::optional<std::string> response_ref);
    /** Queues `r`'s unit on the store's writer; its handler (if any) is told once it committed. */
    void record_behind(request_context const& ctx, std::shared_ptr<record> r);
    /** A body of `run`: from the store when its reference says it is kept there, else the blob store. */
    result<std::string> read_body(request_context const& ctx, integration_run const& run, std::string const& ref,
                                  storage::run_body part);
    std::shared_ptr<resilience::circuit_breaker> breaker(std::string const& connection_id);
    result<run_outcome> replay(request_context const& ctx, integration_run run,
                               std::optional<std::string> failure_id = {});

    storage::store& store_;
    credentials::credential_service& credentials_;
    blobs::blob_store& blobs_;
    net::egress_policy egress_;  // what `starts_without_blocking` checks a URL's host with
    clock const& clock_;
    run_service_options options_;
    std::optional<error> invalid_;  // what `validate` refused in options_: every run is refused with it
    resilience::rate_limiter own_limiter_;
    http::scheduler twin_timer_ = http::waits_on({});  // ends a twin's wait (`idempotency_wait`)
    http::pipeline outbound_;  // every vendor call: trace, retry, egress, rate limit, breaker, auth, redirects
    std::mutex breakers_mutex_;
    std::map<std::string, std::shared_ptr<resilience::circuit_breaker>> breakers_;
    std::mutex bindings_mutex_;
    std::unordered_map<std::string, binding> bindings_;
    std::mutex flights_mutex_;
    std::unordered_map<std::string, std::shared_ptr<flight>> flights_;  // by tenant + '\n' + key
    std::unordered_set<std::string> executing_;                         // run ids written and not yet ended here
    std::mutex jobs_mutex_;
    std::size_t in_flight_ = 0;          // started executions not yet reported (under jobs_mutex_)
    std::condition_variable idle_cv_;    // the destructor waits on it for in_flight_ == 0
    std::unique_ptr<detail::fair_pool> pool_;  // the async threads, taken by tenants in turn
    std::mutex records_mutex_;
    std::condition_variable records_cv_;  // callers wait on it for room, for a flush, the destructor for none
    std::size_t recording_ = 0;           // records submitted and not yet committed (or failed)
    std::size_t record_errors_ = 0;
    std::string last_record_error_;
};

}  // namespace integration::runs

#endif
