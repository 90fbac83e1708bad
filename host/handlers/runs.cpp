#include "handlers/handlers.hpp"
#include <integration/core/utf8.hpp>

#include "problem.hpp"

#include <boost/asio/post.hpp>
#include <boost/beast/core/detail/base64.hpp>
#include <boost/json/serialize.hpp>

#include <charconv>
#include <cmath>

namespace integration::host {
namespace {

// A number or bool as text the vendor reads back as the same value. Boost.JSON writes a
// fraction in exponent form (19.99 as 1.999E1, which a vendor reading integers takes for 1), and
// keeps an integer past 64 bits as a double that has lost digits: that one is refused.
result<std::string> scalar_text(boost::json::value const& v, std::string const& field) {
    if (v.is_bool()) return std::string(v.get_bool() ? "true" : "false");
    if (v.is_int64()) return std::to_string(v.get_int64());  // exact, however large
    if (v.is_uint64()) return std::to_string(v.get_uint64());
    double const d = v.get_double();
    if (!(std::abs(d) < 9007199254740992.0))  // 2^53: past it a double does not hold every integer
        return error{errc::invalid_argument, field + " is a number too large to send exactly; send it as a string"};
    char text[400];  // fixed notation of the smallest doubles runs to about 340 characters
    auto const [end, ec] = std::to_chars(text, text + sizeof text, d, std::chars_format::fixed);  // shortest that reads back the same
    if (ec != std::errc()) return error{errc::invalid_argument, field + " is a number that cannot be written; send it as a string"};
    return std::string(text, end);
}

result<std::vector<std::pair<std::string, std::string>>> string_pairs(boost::json::object const& o, std::string const& path) {
    std::vector<std::pair<std::string, std::string>> out;
    for (auto const& [k, v] : o) {
        auto field = path + "." + std::string(k);
        if (v.is_string()) {
            out.emplace_back(std::string(k), std::string(v.get_string()));
        } else if (v.is_number() || v.is_bool()) {
            auto text = scalar_text(v, field);
            if (!text) return text.error();
            out.emplace_back(std::string(k), std::move(*text));
        } else {
            return error{errc::invalid_argument, field + " must be a string"};
        }
    }
    return out;
}

result<runs::run_input> parse_input(boost::json::object const& body) {
    runs::run_input in;
    auto const* j = body.if_contains("input");
    if (!j || j->is_null()) return in;
    if (!j->is_object()) return error{errc::invalid_argument, "input must be an object"};
    auto const& o = j->get_object();
    if (auto r = only_members(o, "input", {"pathParams", "query", "headers", "body"}); !r) return r.error();
    auto object_member = [&](char const* name) -> result<boost::json::object const*> {
        auto const* v = o.if_contains(name);
        if (!v || v->is_null()) return static_cast<boost::json::object const*>(nullptr);
        if (!v->is_object()) return error{errc::invalid_argument, std::string("input.") + name + " must be an object"};
        return &v->get_object();
    };
    auto params = object_member("pathParams");
    if (!params) return params.error();
    if (*params) {
        auto p = string_pairs(**params, "input.pathParams");
        if (!p) return p.error();
        for (auto& [k, v] : *p) in.path_params[k] = v;
    }
    auto query = object_member("query");
    if (!query) return query.error();
    if (*query) {
        auto p = string_pairs(**query, "input.query");
        if (!p) return p.error();
        in.query = std::move(*p);
    }
    auto headers = object_member("headers");
    if (!headers) return headers.error();
    if (*headers) {
        auto p = string_pairs(**headers, "input.headers");
        if (!p) return p.error();
        in.headers = std::move(*p);
    }
    if (auto const* b = o.if_contains("body"); b && !b->is_null())
        in.body = b->is_string() ? std::string(b->get_string()) : boost::json::serialize(*b);
    return in;
}

// JSON text is UTF-8: bytes of a vendor's that are not would make the answer unreadable.
std::string utf8_or_replaced(std::string const& s) { return is_valid_utf8(s) ? s : utf8_excerpt(s, s.size() * 3); }

// `body` is the vendor's body as text: the host does not guess at its media type. A body that is
// not UTF-8 (an image, gzip, Latin-1 text) is base64, and `bodyEncoding` says so.
boost::json::object render_outcome(runs::run_outcome const& out) {
    auto o = aggregate_to_json(out.run);
    if (out.response) {
        boost::json::object res;
        res["status"] = out.response->status;
        boost::json::object headers;
        for (auto const& [k, v] : http::combined_headers(out.response->headers)) headers[utf8_or_replaced(k)] = utf8_or_replaced(v);
        res["headers"] = std::move(headers);
        auto const& body = out.response->body;
        if (is_valid_utf8(body)) {
            res["body"] = body;
        } else {
            namespace b64 = boost::beast::detail::base64;
            std::string encoded(b64::encoded_size(body.size()), '\0');
            encoded.resize(b64::encode(encoded.data(), body.data(), body.size()));
            res["body"] = std::move(encoded);
            res["bodyEncoding"] = "base64";
        }
        o["response"] = std::move(res);
    } else {
        o["response"] = nullptr;
    }
    if (out.failure_id) o["failureId"] = *out.failure_id;
    o["replayed"] = out.replayed;
    return o;
}

// Executes a checked run request; answered once the run is recorded (on disk with the default
// --recording immediate): the calling thread is free as soon as the call started, and the run
// shares its commit with every run recorded meanwhile.
void start_run(services& s, request_context const& ctx, boost::asio::any_io_executor io, runs::execute_request req,
               responder done) {
    auto told = [&s, io = std::move(io), done = std::move(done)](result<runs::run_outcome> out) mutable {
        if (!out && out.error() == errc::in_progress) {
            // A twin with this key is still executing: its outcome is for a retry to collect.
            auto p = problem_from(out.error());
            p.headers.emplace_back("Retry-After", "1");
            return done(std::move(p));
        }
        if (!out) return done(out.error());  // bad input claims no key: a corrected request may use it
        // A recorded run is told on the store's writer, which every other commit waits for:
        // render its answer on the connection's thread.
        boost::asio::post(io, [&s, out = std::move(*out), done = std::move(done)]() mutable {
            if (!out.replayed) s.metrics.count_run(to_string(out.run.status()));
            // Running: its next attempt would start past --run-deadline-ms, so the retry
            // worker continues it; GET /integrations/runs/{runId} shows how it ends.
            auto rep = json_reply(out.run.status() == runs::run_status::running ? 202 : 201, render_outcome(out));
            if (out.replayed) rep.headers.emplace_back("Idempotent-Replayed", "true");
            done(std::move(rep));
        });
    };
    s.runs->execute(ctx, std::move(req), std::move(told));
}

}  // namespace

void add_run_routes(router& r, services& s) {
    r.add("POST", "/integrations/runs", async_handler([&s](call& c, responder done) {
        auto body = c.json({"connectionId", "operation", "input"});
        if (!body) return done(body.error());
        auto connection = optional_string(*body, "connectionId");
        if (!connection) return done(connection.error());
        if (!*connection) return done(error{errc::invalid_argument, "connectionId is required"});
        auto operation = optional_string(*body, "operation");
        if (!operation) return done(operation.error());
        if (!*operation) return done(error{errc::invalid_argument, "operation is required"});
        auto input = parse_input(*body);
        if (!input) return done(input.error());
        runs::execute_request req{.connection_id = **connection, .operation = **operation, .input = std::move(*input)};
        auto key = std::string(c.header("Idempotency-Key"));
        if (!key.empty()) {
            if (key.size() > 255) return done(error{errc::invalid_argument, "Idempotency-Key must be at most 255 characters"});
            // Kept with the run and shown in its JSON: UTF-8 text only.
            if (!is_valid_utf8(key)) return done(error{errc::invalid_argument, "Idempotency-Key must be UTF-8 text"});
            req.idempotency_key = key;
        }
        // On the connection's thread, a run starts there only when nothing before its vendor call
        // can block (an Idempotency-Key's lookup is a store read): no hop to an execution thread.
        bool here = !c.offload || (key.empty() && s.runs->starts_without_blocking(c.ctx, req));
        auto run = [&s, io = c.io, ctx = c.ctx, req = std::move(req), done = std::move(done)]() mutable {
            start_run(s, ctx, io, std::move(req), std::move(done));
        };
        if (here) return run();
        c.offload(std::move(run));
    }), {.large_body = true, .calls_vendors = true, .async_vendor_calls = true, .starts_on_io_thread = true});  // carries the vendor's request body

    r.add("GET", "/integrations/runs", [&s](call& c) -> result<reply> {
        auto page = c.page();
        if (!page) return page.error();
        storage::run_query q{c.query_param("connectionId"), std::nullopt};
        if (auto st = c.query_param("status")) {
            auto parsed = parse_enum<runs::run_status>(*st, "status");
            if (!parsed) return parsed.error();
            q.status = *parsed;
        }
        auto list = storage::read_for(*s.store, c.ctx, [&](storage::unit_of_work& uow) { return uow.runs().list(q, *page); });
        if (!list) return list.error();
        return json_reply(200, page_json(*list, render<runs::integration_run>));
    }, {.query = {"connectionId", "status", "limit", "cursor"}});

    r.add("GET", "/integrations/runs/{runId}", [&s](call& c) -> result<reply> {
        auto found = storage::read_for(*s.store, c.ctx, [&](storage::unit_of_work& uow) { return uow.runs().find(c.params["runId"]); });
        if (!found) return found.error();
        return json_reply(200, render(*found));
    });

    r.add("GET", "/integrations/failures", [&s](call& c) -> result<reply> {
        auto page = c.page();
        if (!page) return page.error();
        auto unresolved = c.query_flag("unresolved");
        if (!unresolved) return unresolved.error();
        storage::failure_query q{.run_id = c.query_param("runId"),
                                 .delivery_id = c.query_param("deliveryId"),
                                 .unresolved_only = *unresolved,
                                 .credential_id = c.query_param("credentialId"),
                                 .connection_id = c.query_param("connectionId")};
        auto list = s.failures->list(c.ctx, q, *page);
        if (!list) return list.error();
        return json_reply(200, page_json(*list, render<failures::integration_failure>));
    }, {.query = {"runId", "deliveryId", "connectionId", "credentialId", "unresolved", "limit", "cursor"}});

    r.add("GET", "/integrations/failures/{failureId}", [&s](call& c) -> result<reply> {
        auto found = s.failures->find(c.ctx, c.params["failureId"]);
        if (!found) return found.error();
        return json_reply(200, render(*found));
    });

    r.add("POST", "/integrations/failures/{failureId}/escalate", [&s](call& c) -> result<reply> {
        // host-api.md gives this route no body: one without a reason is escalated with a reason that says so.
        auto body = c.optional_json({"reason", "ticketRef"});
        if (!body) return body.error();
        auto reason = optional_string(*body, "reason");
        if (!reason) return reason.error();
        auto ticket = optional_string(*body, "ticketRef");
        if (!ticket) return ticket.error();
        auto escalated = s.failures->escalate(c.ctx, c.params["failureId"], reason->value_or("escalated via the API"), *ticket);
        if (!escalated) return escalated.error();
        return json_reply(200, render(*escalated));
    });

    // An addition to host-api.md: a failure resolved by hand (a dead outbox event's drops it).
    r.add("POST", "/integrations/failures/{failureId}/resolve", [&s](call& c) -> result<reply> {
        auto body = c.optional_json({"outcome"});
        if (!body) return body.error();
        auto outcome = optional_string(*body, "outcome");
        if (!outcome) return outcome.error();
        auto o = failures::source_outcome::dead_lettered;
        if (*outcome == "Succeeded")
            o = failures::source_outcome::succeeded;
        else if (*outcome && **outcome != "DeadLettered")
            return error{errc::invalid_argument, "outcome must be Succeeded or DeadLettered"};
        auto resolved = s.failures->resolve(c.ctx, c.params["failureId"], o);
        if (!resolved) return resolved.error();
        return json_reply(200, render(*resolved));
    });

    // An addition to host-api.md: a dead outbox event published again.
    r.add("POST", "/integrations/failures/{failureId}/replay", [&s](call& c) -> result<reply> {
        if (auto none = c.no_fields(); !none) return none.error();
        auto replayed = s.failures->replay(c.ctx, c.params["failureId"]);
        if (!replayed) return replayed.error();
        return json_reply(200, render(*replayed));
    });
}

}  // namespace integration::host
