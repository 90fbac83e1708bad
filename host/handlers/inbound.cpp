#include "handlers/handlers.hpp"
#include "problem.hpp"

#include <integration/services/inbound_gateway.hpp>

namespace integration::host {
namespace {

using webhooks::inbound_rejection;

// host-api.md: 401 bad or missing signature or timestamp outside tolerance, 404 unknown or
// retired connection, 409 same id with a different body, 413 over the limit; a body the scheme
// cannot use is the vendor's malformed request.
reply refusal_problem(webhooks::inbound_refusal const& r) {
    struct answer {
        unsigned status;
        std::string_view title;
    };
    auto a = [&]() -> answer {
        switch (r.reason) {
        case inbound_rejection::missing_signature: return {401, "The webhook's signature headers are missing"};
        case inbound_rejection::malformed_signature: return {401, "The webhook's signature headers are malformed"};
        case inbound_rejection::stale_timestamp: return {401, "The webhook's timestamp is outside the tolerance"};
        case inbound_rejection::signature_mismatch: return {401, "The webhook's signature does not match"};
        case inbound_rejection::malformed_body: return {400, "The webhook's body is malformed"};
        case inbound_rejection::unknown_connection: return {404, "No connection receives webhooks here"};
        case inbound_rejection::body_too_large: return {413, "Request body too large"};
        case inbound_rejection::delivery_id_conflict: return {409, "The delivery id was received with another body"};
        }
        return {400, "The webhook was refused"};
    }();
    return problem(a.status, webhooks::to_string(r.reason), a.title, r.detail);
}

boost::json::object outcome_json(webhooks::inbound_outcome const& out, std::string_view name) {
    boost::json::object o;
    o["deliveryId"] = out.delivery_id;
    o["outcome"] = name;
    if (out.identity) {
        o["providerDeliveryId"] = out.identity->provider_delivery_id;
        o["eventType"] = out.identity->event_type;
    }
    return o;
}

result<reply> inbound_answer(services& s, result<webhooks::inbound_outcome> const& out) {
    if (!out) return out.error();
    auto answer = [&]() -> reply {
        switch (out->outcome) {
        case webhooks::inbound_outcome::kind::accepted:
            s.metrics.count_inbound(false);
            return json_reply(202, outcome_json(*out, "accepted"));
        case webhooks::inbound_outcome::kind::duplicate:
            s.metrics.count_inbound(true);
            return json_reply(200, outcome_json(*out, "duplicate"));
        case webhooks::inbound_outcome::kind::challenge: {
            // Slack saves an Events API request URL only when the answer echoes its challenge.
            boost::json::object o;
            o["challenge"] = *out->identity->challenge;
            return json_reply(200, o);
        }
        case webhooks::inbound_outcome::kind::rejected: break;
        }
        auto refusal = out->refusal.value_or(webhooks::inbound_refusal{inbound_rejection::malformed_body, "refused"});
        s.metrics.count_inbound_rejected(webhooks::to_string(refusal.reason));
        return refusal_problem(refusal);
    }();
    answer.tenant = out->tenant_id;
    return answer;
}

}  // namespace

void add_inbound_routes(router& r, services& s) {
    // Vendors call this without an API key: the connection names the tenant, the signature proves
    // the sender. The URL is the one the vendor called (Twilio signs it): --public-url + target.
    r.add("POST", "/webhooks/inbound/{connectionId}", async_handler([&s](call& c, responder done) {
        // The header fields, the body and the target are views of the request, which lives until
        // it is answered.
        auto receive = [&s, connection = c.params["connectionId"], fields = std::move(c.fields), body = c.body,
                        url = public_base_url(s.config) + std::string(c.target),
                        content_type = c.header("Content-Type"), done = std::move(done)]() mutable {
            std::vector<webhooks::header_field> headers;
            headers.reserve(fields.size());
            for (auto const& [name, value] : fields) headers.push_back({name, value});
            // No thread waits for the commit: the answer is given once the delivery is durable,
            // on the store's thread, sharing the commit with every delivery received meanwhile.
            // `receive` has read the request when it returns.
            s.inbound->receive(connection, {.headers = headers, .body = body, .url = url, .content_type = content_type},
                               [&s, done = std::move(done)](result<webhooks::inbound_outcome> out) {
                                   done(inbound_answer(s, out));
                               });
        };
        // On the connection's thread, only when nothing before the commit can block (a
        // registration not cached is read from the store and the vault; a large payload is
        // written to the blob store).
        if (!c.offload || s.inbound->receives_without_blocking(c.params["connectionId"], c.body.size())) return receive();
        c.offload(std::move(receive));
    }), {.who = access::open, .vendor_webhook = true, .starts_on_io_thread = true});
}

}  // namespace integration::host
