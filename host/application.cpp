#include "application.hpp"

#include <integration/core/utf8.hpp>

#include "access_log.hpp"
#include "handlers/handlers.hpp"
#include "problem.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <atomic>
#include <memory>

namespace integration::host {
namespace {

bool is_json_media_type(std::string_view ct) {
    auto semi = ct.find(';');
    auto type = ct.substr(0, semi);
    while (!type.empty() && type.back() == ' ') type.remove_suffix(1);
    std::string lower(type);
    for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return lower == "application/json" || (lower.starts_with("application/") && lower.ends_with("+json"));
}

constexpr std::string_view no_key_detail = "send `Authorization: Bearer <key>`; create a key with `integration-host keys create`";
constexpr std::string_view unknown_key_detail = "the API key is not known";

reply unauthorized(std::string_view detail) {
    auto p = problem(401, "unauthorized", "Missing or unknown API key", std::string(detail));
    p.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"integration\"");
    return p;
}

std::string_view bearer_token(std::string_view auth) {
    if (auth.size() < 7) return {};
    std::string scheme(auth.substr(0, 7));
    for (auto& ch : scheme) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (scheme != "bearer ") return {};
    auto token = auth.substr(7);
    while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
    return token;
}

}  // namespace

application::application(services& s) : services_(s) {
    add_operation_routes(router_, s);
    add_provider_routes(router_, s);
    add_credential_routes(router_, s);
    add_oauth2_routes(router_, s);
    add_connection_routes(router_, s);
    add_run_routes(router_, s);
    add_webhook_routes(router_, s);
    add_inbound_routes(router_, s);
}

bool application::answers_inline(http_request const& req) {
    return req.method() == beast_http::verb::get && req.target() == "/healthz";
}

router::match application::route(std::string_view method, std::string_view target) const {
    auto url = boost::urls::parse_origin_form(target);
    if (!url) return {};
    return router_.find(method, url->encoded_path());
}

bool application::tenant_counts::begin(std::string const& tenant, std::size_t limit) {
    std::lock_guard lock(mutex_);
    auto& n = counts_[tenant];
    if (n >= limit) return false;
    ++n;
    return true;
}

void application::tenant_counts::end(std::string const& tenant) {
    std::lock_guard lock(mutex_);
    if (auto it = counts_.find(tenant); it != counts_.end() && --it->second == 0) counts_.erase(it);
}

http_response to_response(reply const& r, unsigned version, bool keep_alive) {
    http_response res{static_cast<beast_http::status>(r.status), version};
    res.set(beast_http::field::server, "integration-host");
    res.set(beast_http::field::content_type, r.content_type);
    res.set(beast_http::field::cache_control, "no-store");
    for (auto const& [k, v] : r.headers) res.set(k, v);
    res.keep_alive(keep_alive);
    res.body() = r.text ? *r.text : boost::json::serialize(r.body);
    res.prepare_payload();
    return res;
}

void application::observe(std::string_view method, std::string_view target, unsigned status,
                          std::chrono::steady_clock::duration latency) {
    std::string_view route = "unmatched";
    if (auto url = boost::urls::parse_origin_form(target)) {
        auto m = router_.find(method, url->encoded_path());
        if (!m.pattern.empty()) route = m.pattern;
        // The server refused the body before the gateway saw it: still a rejected inbound webhook.
        if (m.h && m.options.vendor_webhook && status == 413)
            services_.metrics.count_inbound_rejected(webhooks::to_string(webhooks::inbound_rejection::body_too_large));
    }
    services_.metrics.observe_request(route, method_label(method), status, latency);
}

application::body_verdict application::check_before_body(router::match const& route, std::string_view authorization,
                                                          bool may_read_store) const {
    if (!route.h || route.options.who == access::open) return {};
    auto token = bearer_token(authorization);
    if (token.empty()) return {unauthorized(no_key_detail)};
    if (!may_read_store && !services_.keys->found_without_store(token)) return {std::nullopt, true};
    auto owner = services_.keys->find(token);
    if (!owner) return {problem_from(owner.error())};
    if (!*owner) return {unauthorized(unknown_key_detail)};
    return {};
}

std::size_t application::body_limit(router::match const& route) const {
    auto const& c = services_.config;
    if (route.h && route.options.vendor_webhook) return c.inbound_body_limit;
    auto small = std::min(c.json_body_limit, c.body_limit);
    return route.h && route.options.large_body ? c.body_limit : small;
}

void application::refused_connection(std::string_view why) {
    auto n = services_.metrics.count_refused_connection();
    if (n % 100 == 1)
        log_event("warning",
                  "refused a connection: " + std::string(why) + "; " + std::to_string(n) + " refused so far");
}

std::optional<reply> application::dispatch(http_request const& req, router::match& m, request_context& ctx,
                                           std::string& tenant, boost::asio::any_io_executor const& io,
                                           std::function<void(reply)>& answer,
                                           std::function<void(std::function<void()>)> offload) {
    auto target = req.target();
    auto url = boost::urls::parse_origin_form(std::string_view(target.data(), target.size()));
    if (!url) return problem(400, "bad-request", "Malformed request target", "the request target is not a valid origin-form URL");
    // Two credentials, two media types or two idempotency keys: which one would act is a guess
    // (and a proxy in front may have guessed the other), so none does.
    for (std::string_view name : {"Authorization", "Content-Type", "Idempotency-Key"})
        if (auto n = req.count(boost::beast::string_view(name.data(), name.size())); n > 1)
            return problem(400, "bad-request", "More than one " + std::string(name) + " header",
                           "send one " + std::string(name) + " header, not " + std::to_string(n));
    if (!m.h) {
        auto encoded = url->encoded_path();
        std::string path(encoded.data(), encoded.size());
        if (!m.path_known) return problem(404, "route-not-found", "No such route", "no route for " + path);
        std::string allow;
        for (auto const& a : m.allowed) allow += (allow.empty() ? "" : ", ") + a;
        auto p = problem(405, "method-not-allowed", "Method not allowed", path + " accepts " + allow);
        p.headers.emplace_back("Allow", allow);
        return p;
    }
    if (m.options.who != access::open) {
        auto auth = req[beast_http::field::authorization];
        auto token = bearer_token(std::string_view(auth.data(), auth.size()));
        if (token.empty()) return unauthorized(no_key_detail);
        auto owner = services_.keys->find(token);
        if (!owner) return problem_from(owner.error());
        if (!*owner) return unauthorized(unknown_key_detail);
        if (auto const& c = services_.config; c.key_rate_limit > 0) {
            auto got = key_limits_.try_acquire((*owner)->key_hash, {static_cast<double>(c.key_rate_limit),
                                                                   static_cast<std::int64_t>(std::max(c.key_burst, std::size_t{1}))});
            if (!got.granted) {
                auto wait = std::chrono::ceil<std::chrono::seconds>(got.retry_after).count();
                auto p = problem(429, "rate-limited", "Too many requests",
                                 "this API key may send " + std::to_string(c.key_rate_limit) + " requests per second (burst " +
                                     std::to_string(c.key_burst) + "); retry after " + std::to_string(wait) + " s");
                p.headers.emplace_back("Retry-After", std::to_string(std::max<std::int64_t>(wait, 1)));
                return p;
            }
        }
        if (m.options.who == access::admin && !(*owner)->admin)
            return problem_from(error{errc::forbidden, std::string(req.method_string()) + " " + std::string(m.pattern) +
                                                           " needs an admin key (`integration-host keys create --admin`): it "
                                                           "reports on every tenant"});
        ctx.tenant_id = (*owner)->tenant_id;
        ctx.actor = "api-key";
        ctx.admin = (*owner)->admin;
        tenant = ctx.tenant_id;
    }
    // A vendor's webhook is verified over its bytes as sent, whatever their media type (Slack
    // and Twilio send forms).
    if (!req.body().empty() && !m.options.vendor_webhook) {
        auto ct = req[beast_http::field::content_type];
        if (!is_json_media_type(std::string_view(ct.data(), ct.size())))
            return problem(415, "unsupported-media-type", "Unsupported media type",
                           "send the body as application/json");
    }
    call c;
    c.ctx = ctx;
    c.io = io;
    c.offload = std::move(offload);
    c.params = std::move(m.params);
    std::optional<std::string> repeated;
    for (auto const& p : url->params()) {
        // A bare `?` or a trailing `&` is an empty parameter (Boost.URL): nothing was asked.
        if (p.key.empty() && !p.has_value) continue;
        // `?runId=&deliveryId=dlv-1`, as host-api.md spells the filters: an empty value of a
        // parameter the route takes asks for nothing (kept, it would match no row).
        if (p.value.empty() && std::ranges::find(m.options.query, p.key) != m.options.query.end()) continue;
        if (!c.query.emplace(p.key, p.value).second && !repeated) repeated = p.key;
    }
    // Decoded path and query values end up in stored records, listings and errors, all JSON.
    for (auto const* values : {&c.params, &c.query})
        for (auto const& [name, value] : *values)
            if (!is_valid_utf8(name) || !is_valid_utf8(value))
                return problem_from(error{errc::invalid_argument, "a path segment or query parameter is not UTF-8 "
                                                                  "once its percent-encoding is decoded"});
    // `?status=Failed&status=Running` has no one meaning; a vendor's webhook URL is its own.
    if (repeated && !m.options.vendor_webhook)
        return problem_from(error{errc::invalid_argument, "query parameter `" + *repeated + "` is given more than once"});
    // A misspelt filter (`?stauts=Failed`) would otherwise list everything as if it had matched.
    if (!m.options.vendor_webhook && !m.options.any_query)
        for (auto const& [name, value] : c.query)
            if (std::ranges::find(m.options.query, name) == m.options.query.end()) {
                std::string takes;
                for (auto q : m.options.query) takes += (takes.empty() ? "" : ", ") + std::string(q);
                return problem_from(error{errc::invalid_argument,
                                          "query parameter `" + name + "` is not one " + std::string(m.pattern) +
                                              (takes.empty() ? " takes: it takes none" : " takes; it takes " + takes)});
            }
    c.body = req.body();
    c.header = [&req](std::string_view name) {
        auto v = req[boost::beast::string_view(name.data(), name.size())];
        return std::string_view(v.data(), v.size());
    };
    if (m.options.vendor_webhook) {
        for (auto const& f : req)
            c.fields.emplace_back(std::string_view(f.name_string().data(), f.name_string().size()),
                                  std::string_view(f.value().data(), f.value().size()));
        c.target = std::string_view(target.data(), target.size());
    }
    // One tenant has at most --tenant-executions vendor-calling requests in progress, counted
    // until answered: a run waiting for its vendor holds no thread, but it holds a socket and
    // memory. A route whose vendor call holds its thread (a probe, a token exchange) may also
    // hold at most half the execution threads per tenant, so other tenants always find one
    // however slow that tenant's vendors are.
    auto busy = [this](std::string what) {
        auto p = problem(429, "tenant-busy", "Too many requests calling vendors", std::move(what) + "; retry after 1 s");
        p.headers.emplace_back("Retry-After", "1");
        return p;
    };
    auto const& config = services_.config;
    std::string counted_as = ctx.tenant_id;
    // Under a key of its own: the state is unverified here, and a callback naming a tenant must
    // not take from that tenant's own runs and probes.
    if (m.options.counted_by_state)
        if (auto state = c.query.find("state"); state != c.query.end())
            counted_as = "oauth2-callback\n" + credentials::tenant_of_state(state->second);
    if (m.options.calls_vendors && !executions_.begin(counted_as, config.tenant_executions))
        return busy("this tenant already has " + std::to_string(config.tenant_executions) +
                    " requests calling vendors in progress (--tenant-executions)");
    bool holds_thread = m.options.calls_vendors && !m.options.async_vendor_calls;
    if (holds_thread && !on_threads_.begin(counted_as, std::max<std::size_t>(config.execution_threads / 2, 1))) {
        executions_.end(counted_as);
        return busy("this tenant already holds half the execution threads (--execution-threads) with calls to vendors");
    }
    struct end_on_exit {
        tenant_counts* counts;
        std::string const* tenant;
        ~end_on_exit() {
            if (counts) counts->end(*tenant);
        }
    } slot{holds_thread ? &on_threads_ : nullptr, &counted_as};
    auto answered = std::make_shared<std::atomic<bool>>(false);
    auto returned = std::make_shared<std::atomic<bool>>(false);  // the handler returned
    // `tenant` belongs to the request's state, which `answer` keeps alive.
    responder done = [this, answer, answered, returned, io, &tenant, counted = m.options.calls_vendors ? counted_as : std::string(),
                      vendors = m.options.calls_vendors](result<reply> r) {
        if (answered->exchange(true)) return;
        if (vendors) executions_.end(counted);
        // An open route may name the tenant it resolved (an inbound webhook's connection's).
        if (r && tenant.empty()) tenant = r->tenant;
        auto rep = r ? std::move(*r) : problem_from(r.error());
        // Answered later, on a thread that finished the work (a store's writer, which other
        // requests' commits wait on): render and write the answer on the connection's thread.
        if (returned->load()) return boost::asio::dispatch(io, [answer, rep = std::move(rep)]() mutable { answer(std::move(rep)); });
        answer(std::move(rep));
    };
    try {
        (*m.h)(c, done);
    } catch (std::exception const& e) {
        log_event("error", std::string("handler threw: ") + e.what());
        done(error{errc::storage_failure, e.what()});
    }
    returned->store(true);
    return std::nullopt;
}

trace_context trace_of(http_request const& req) {
    auto tp = req["traceparent"];
    auto parsed = trace_context::parse_traceparent(std::string_view(tp.data(), tp.size()));
    return parsed ? parsed->child() : trace_context::generate();
}

void application::handle(http_request const& req, router::match route, std::chrono::steady_clock::time_point started,
                         boost::asio::any_io_executor io, std::function<void(http_response)> done,
                         std::function<void(std::function<void()>)> offload) {
    // On the connection's thread, a key not cached would be read from the store: the request
    // goes to an execution thread before anything is counted or checked.
    if (offload && route.h && route.options.who != access::open) {
        auto auth = req[beast_http::field::authorization];
        auto token = bearer_token(std::string_view(auth.data(), auth.size()));
        if (!token.empty() && !services_.keys->found_without_store(token))
            return offload([this, &req, route = std::move(route), started, io, done = std::move(done)]() mutable {
                handle(req, std::move(route), started, std::move(io), std::move(done));
            });
    }
    struct request_state {
        request_context ctx;
        std::string tenant;
        router::match route;
    };
    auto st = std::make_shared<request_state>();
    st->ctx.trace = trace_of(req);
    st->route = std::move(route);
    std::function<void(reply)> answer = [this, &req, started, st, done = std::move(done)](reply r) {
        r.headers.emplace_back("traceparent", st->ctx.trace.traceparent());
        auto res = to_response(r, req.version(), req.keep_alive());
        auto target = req.target();
        auto method = std::string_view(req.method_string().data(), req.method_string().size());
        auto latency = std::chrono::steady_clock::now() - started;
        // The route pattern, never the raw path, so that the metric's cardinality stays bounded.
        services_.metrics.observe_request(st->route.pattern.empty() ? std::string_view("unmatched") : st->route.pattern,
                                          method_label(method), r.status, latency);
        log_access({.method = method,
                    .target = std::string_view(target.data(), target.size()),
                    .status = r.status,
                    .latency = latency,
                    .trace_id = st->ctx.trace.trace_id,
                    .tenant = st->tenant});
        done(std::move(res));
    };
    if (auto refused = dispatch(req, st->route, st->ctx, st->tenant, io, answer, std::move(offload)))
        answer(std::move(*refused));
}

}  // namespace integration::host
