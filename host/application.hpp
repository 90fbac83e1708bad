#ifndef INTEGRATION_HOST_APPLICATION_HPP
#define INTEGRATION_HOST_APPLICATION_HPP

// From an HTTP request to an HTTP response: trace, API key, route, content checks, handler,
// problem+json, access log. Runs on a worker thread, where the library calls may block, or on the
// connection's I/O thread for a run that starts without blocking (`handle`'s `offload`).

#include "http_types.hpp"
#include "router.hpp"
#include "services.hpp"

#include <integration/outbound/token_bucket.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <mutex>
#include <string>
#include <unordered_map>

namespace integration::host {

class application {
public:
    explicit application(services& s);

    /** True for requests answered without touching the library (`GET /healthz`): the server
     *  answers them on its own thread instead of handing them to a worker. */
    static bool answers_inline(http_request const& req);

    /** The route `method target` names, matched once per request when its header arrives: no
     *  handler when no route has that path and method, or when the target is not origin-form. */
    router::match route(std::string_view method, std::string_view target) const;

    /** Answers `req` through `done`, once: on this thread when its handler answers before it
     *  returns, else on `io` (a run answers once its record is committed, an inbound webhook once
     *  its delivery is durable: the answer is rendered on `io`, not on the thread that finished
     *  the work). `req` must live until then. `route` is `route(req)`'s match; `started` is when
     *  its header arrived (for the logged latency). With `offload`, the caller is the connection's
     *  thread, which must not block: a request whose API key is not cached, and whatever its
     *  handler cannot do without blocking (`call::offload`), continues through `offload` on an
     *  execution thread. */
    void handle(http_request const& req, router::match route, std::chrono::steady_clock::time_point started,
                boost::asio::any_io_executor io, std::function<void(http_response)> done,
                std::function<void(std::function<void()>)> offload = {});

    /** Counts an answer the server gave without the application (a malformed or oversized
     *  request) in the request metrics, under the route its target matches. */
    void observe(std::string_view method, std::string_view target, unsigned status,
                 std::chrono::steady_clock::duration latency);

    /** The body limit of a request to `route`: `--inbound-body-limit` for inbound webhooks,
     *  `--body-limit` for routes that carry vendor bodies, `--json-body-limit` for the others and
     *  for unknown routes (whichever is smaller). */
    std::size_t body_limit(router::match const& route) const;

    /** What the header of a request to `route` says before its body is read. */
    struct body_verdict {
        std::optional<reply> refusal;  ///< 401: the route needs a key and `authorization` has no known one.
        bool undecided = false;        ///< The key is not cached: ask again with `may_read_store`.
    };
    /** Checks the API key of a request whose (large) body is still to come, so that a client
     *  without a known key never makes the server read and hold its body. With `may_read_store`
     *  false it answers at once (on the connection's thread), undecided when the key must be read
     *  from the store. */
    body_verdict check_before_body(router::match const& route, std::string_view authorization, bool may_read_store) const;

    /** Counts a connection the server refused (`why`: which limit), and logs the first refusal
     *  and every 100th (a flood must not flood the log too). */
    void refused_connection(std::string_view why);

    /** The routes served. */
    router const& routes() const noexcept { return router_; }

private:
    /** Checks `req` and calls its route's handler: the answer when it is refused, else none once
     *  the handler was called with `answer` as its responder. */
    std::optional<reply> dispatch(http_request const& req, router::match& m, request_context& ctx, std::string& tenant,
                                  boost::asio::any_io_executor const& io, std::function<void(reply)>& answer,
                                  std::function<void(std::function<void()>)> offload);

    /** Requests of each tenant counted against a limit. */
    class tenant_counts {
    public:
        /** Counts one more of `tenant`'s; false (and not counted) at `limit`. */
        bool begin(std::string const& tenant, std::size_t limit);
        void end(std::string const& tenant);

    private:
        std::mutex mutex_;
        std::unordered_map<std::string, std::size_t> counts_;
    };

    services& services_;
    router router_;
    resilience::rate_limiter key_limits_{system_clock::instance()};  // per API key (its hash)
    tenant_counts executions_;  // vendor-calling requests in progress (until answered), by tenant
    tenant_counts on_threads_;  // those of them running on an execution thread, by tenant
};

/** The trace of a request: a child of its `traceparent`, or a new trace without a valid one. */
trace_context trace_of(http_request const& req);

/** Renders a reply as a response to a request of HTTP `version`. */
http_response to_response(reply const& r, unsigned version, bool keep_alive);

}  // namespace integration::host

#endif
