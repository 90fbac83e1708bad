#ifndef INTEGRATION_HOST_ROUTER_HPP
#define INTEGRATION_HOST_ROUTER_HPP

// Routes `METHOD /path/{param}` to handlers; tells an unknown path (404) from a known path with
// another method (405).

#include "reply.hpp"

#include <integration/core/context.hpp>
#include <integration/ports/store.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/json/object.hpp>

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <initializer_list>
#include <vector>

namespace integration::host {

/** One request as a handler sees it. */
struct call {
    request_context ctx;
    std::map<std::string, std::string, std::less<>> params;  // from the path
    std::map<std::string, std::string, std::less<>> query;
    std::string_view body;  // the request's, which lives until the request is answered
    std::function<std::string_view(std::string_view)> header;
    /** Vendor webhook routes only (`route_options::vendor_webhook`): every header field as
     *  received, in order, and the request target with its query (signatures cover them). */
    std::vector<std::pair<std::string_view, std::string_view>> fields;
    std::string_view target;
    /** The connection's thread: an asynchronous handler renders its answer there, not on the
     *  thread that finished its work (a store's writer, which other requests' commits wait on). */
    boost::asio::any_io_executor io;
    /** Set when the handler runs on the connection's thread (`route_options::starts_on_io_thread`):
     *  what may block (a store read or write, a name lookup, a token request) goes to a pool
     *  thread through it instead, and the handler answers from there. Empty on a pool thread. */
    std::function<void(std::function<void()>)> offload;

    /** The body as a JSON object. An empty body is refused (the route needs one), malformed JSON
     *  names the byte offset; invalid UTF-8 and nesting deeper than 32 are malformed. A member
     *  not among `members` is refused (a misspelt field would otherwise be dropped in silence);
     *  with none listed, the route checks the body's members itself (`unknown_members::refuse`). */
    result<boost::json::object> json(std::initializer_list<std::string_view> members = {}) const;
    /** Like `json()`, but an empty body is an empty object: for routes whose fields are all optional. */
    result<boost::json::object> optional_json(std::initializer_list<std::string_view> members) const;
    /** For a route that takes no body: none, or a JSON object without members (`{}`). */
    result<void> no_fields() const;
    /** A query parameter, if present. */
    std::optional<std::string> query_param(std::string_view name) const;
    /** `limit` (1-500, default 50) and `cursor`. */
    result<storage::page_request> page() const;
    /** A query parameter that is `true` or `false`; absent is `false`, anything else is refused. */
    result<bool> query_flag(std::string_view name) const;
};

/** Refuses a member of `o` (at `path`, empty for the body) that is not among `members`. */
result<void> only_members(boost::json::object const& o, std::string_view path, std::initializer_list<std::string_view> members);

using handler = std::function<result<reply>(call&)>;
/** How a handler that answers later gives its answer (once, from any thread). */
using responder = std::function<void(result<reply>)>;
/** A handler that answers through `responder`, possibly after it returned (a run whose record is
 *  still being committed). It must not keep a reference to the `call`. */
using async_handler = std::function<void(call&, responder)>;

/** Who may call a route: anyone, any valid API key, or an admin key only. */
enum class access { open, key, admin };

/** How a route is served, beyond its handler. */
struct route_options {
    access who = access::key;
    /** The body may be as large as `--body-limit` (vendor bodies); other routes take at most
     *  `--json-body-limit`. */
    bool large_body = false;
    /** A vendor's webhook: the body may be as large as `--inbound-body-limit`, of any media type,
     *  and reaches the handler byte for byte with every header field (`call::fields`). */
    bool vendor_webhook = false;
    /** The handler calls vendors (runs, health probes): it runs on the execution pool, within the
     *  tenant's share of it (`--tenant-executions`), never on the workers that serve the rest. */
    bool calls_vendors = false;
    /** With `calls_vendors`: the handler's vendor calls hold no thread (a run starts its call and
     *  returns), so only `--tenant-executions` bounds them, not the tenant's share of the threads. */
    bool async_vendor_calls = false;
    /** The handler starts on the connection's I/O thread, and what could block there goes through
     *  `call::offload` to the pool it would otherwise run on: a request that cannot block costs
     *  no hop to another thread and back. */
    bool starts_on_io_thread = false;
    /** A GET that acts (the OAuth2 callback completes an exchange): HEAD is 405, not the GET run
     *  without its body (a link checker's HEAD would use the code up). */
    bool no_head = false;
    /** The query parameters the route reads; any other is refused (400), unless `any_query`. */
    std::vector<std::string_view> query;
    /** A vendor calls the route (the OAuth2 callback): parameters beyond `query` are its own and
     *  ignored. `vendor_webhook` implies it. */
    bool any_query = false;
    /** An open route that calls vendors (the OAuth2 callback) is counted by the tenant its
     *  `state` query parameter names (`tenant_of_state`), apart from that tenant's keyed
     *  requests: one tenant's slow token endpoint then holds back only its own callbacks, and a
     *  forged state takes nothing from the tenant it names but its callbacks' share. */
    bool counted_by_state = false;
};

/** `open`, `key` or `admin`, as the `routes` command prints it. */
std::string_view access_name(access a) noexcept;

class router {
public:
    /** `pattern` segments in braces bind path parameters. */
    void add(std::string method, std::string pattern, handler h, route_options options = {});
    /** A route whose handler answers through its responder. */
    void add(std::string method, std::string pattern, async_handler h, route_options options = {});

    struct match {
        async_handler const* h = nullptr;
        route_options options;
        std::string_view pattern;  // of the route matched, or of the path when only the method differs
        bool path_known = false;  // some route has this path with another method
        std::vector<std::string> allowed;
        std::map<std::string, std::string, std::less<>> params;
    };
    /** The route of `method` and `path` (percent-encoded, as sent: split on `/`, then each
     *  segment is decoded). */
    match find(std::string_view method, std::string_view path) const;

    /** A registered route, for the `routes` command and the OpenAPI consistency test. */
    struct route_info {
        std::string_view method;
        std::string_view pattern;
        route_options options;
    };
    std::vector<route_info> routes() const;

private:
    struct route {
        std::string method;
        std::string pattern;
        std::vector<std::string> segments;
        async_handler h;
        route_options options;
    };
    std::vector<route> routes_;
};

/** Splits a path on `/` into views of it, dropping the leading empty segment. */
std::vector<std::string_view> split_path(std::string_view path);

}  // namespace integration::host

#endif
