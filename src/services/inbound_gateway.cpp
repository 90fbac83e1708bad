#include <integration/services/inbound_gateway.hpp>

#include <integration/domain/failure.hpp>

#include "../detail/crypto.hpp"
#include "../detail/form.hpp"
#include "../detail/utf8.hpp"

#include <boost/json/parse.hpp>

#include <algorithm>
#include <cctype>
#include <vector>

namespace integration::webhooks {
namespace {

/** At most this much of an unverified body goes into a failure record. */
constexpr std::size_t excerpt_bytes = 256;
/** Deeper JSON is refused as malformed (a body nested 100,000 deep must not exhaust anything). */
constexpr std::size_t max_json_depth = 64;

std::string secret_name_of(std::string const& connection_id) { return "inbound-webhook." + connection_id; }

std::string blob_key_of(std::string const& delivery_id) { return "webhooks/inbound/" + delivery_id + "/payload"; }

bool is_form(std::string_view content_type) {
    constexpr std::string_view form = "application/x-www-form-urlencoded";
    if (content_type.size() < form.size()) return false;
    if (!std::equal(form.begin(), form.end(), content_type.begin(), [](char a, char b) {
            return a == std::tolower(static_cast<unsigned char>(b));
        }))
        return false;
    return content_type.size() == form.size() || content_type[form.size()] == ';' || content_type[form.size()] == ' ';
}

/** The body as the canonical event carries it: the form fields as an object (a repeated name
 *  becomes an array), or the JSON value. Nothing for a body that is neither. */
std::optional<boost::json::value> parse_body(std::string_view body, std::string_view content_type) {
    if (is_form(content_type)) {
        auto params = detail::form_params(body);
        if (!params) return std::nullopt;
        boost::json::object fields;
        for (auto& [key, value] : *params) {
            if (!integration::detail::is_valid_utf8(key) || !integration::detail::is_valid_utf8(value)) return std::nullopt;
            auto* seen = fields.if_contains(key);
            if (!seen) {
                fields[key] = value;
                continue;
            }
            if (!seen->is_array()) *seen = boost::json::array{*seen};
            seen->get_array().emplace_back(value);
        }
        return boost::json::value(std::move(fields));
    }
    boost::json::parse_options opts;
    opts.max_depth = max_json_depth;
    boost::system::error_code ec;
    auto v = boost::json::parse(body, ec, {}, opts);
    if (ec) return std::nullopt;
    return v;
}

bool is_poison(inbound_rejection r) {
    return r == inbound_rejection::malformed_signature || r == inbound_rejection::malformed_body;
}

/** The connection exists in the unit's tenant and is not Retired. */
result<void> active_connection(storage::unit_of_work& uow, std::string const& connection_id) {
    auto c = uow.connections().find(connection_id);
    if (!c) return c.error();
    if (c->status() == connections::connection_status::retired)
        return error{errc::invalid_state, "connection " + connection_id + " is Retired; it takes no inbound webhooks"};
    return {};
}

result<void> check_connection(storage::store& store, request_context const& ctx, std::string const& connection_id) {
    return store.read(ctx, [&](storage::unit_of_work& uow) { return active_connection(uow, connection_id); });
}

}  // namespace

inbound_gateway::inbound_gateway(storage::store& store, credentials::secret_store& secrets, blobs::blob_store& blobs,
                                 clock const& clock, inbound_gateway_options options)
    : store_(store), secrets_(secrets), blobs_(blobs), clock_(clock), options_(options) {
    options_.tolerance_s = std::clamp(options_.tolerance_s, min_tolerance_s, max_tolerance_s);
}

result<inbound_endpoint> inbound_gateway::register_endpoint(request_context const& ctx, std::string const& connection_id,
                                                            inbound_scheme scheme, secret_bytes secret) {
    if (secret.empty()) return error{errc::invalid_argument, "an inbound webhook secret must not be empty"};
    if (auto r = check_connection(store_, ctx, connection_id); !r) return r.error();
    auto name = secret_name_of(connection_id);
    if (auto put = secrets_.put(ctx.tenant_id, name, secret); !put) return put.error();
    auto saved = store_.transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
        if (auto r = active_connection(uow, connection_id); !r) return r;
        return uow.inbound_webhooks().save({connection_id, std::string(to_string(scheme)), name, std::nullopt, std::nullopt});
    });
    if (!saved) return saved.error();
    return inbound_endpoint{connection_id, scheme};
}

result<inbound_endpoint> inbound_gateway::rotate_secret(request_context const& ctx, std::string const& connection_id,
                                                        secret_bytes secret) {
    if (secret.empty()) return error{errc::invalid_argument, "an inbound webhook secret must not be empty"};
    if (auto r = check_connection(store_, ctx, connection_id); !r) return r.error();
    auto now = clock_.now();
    // A new name per rotation: the registration names both secrets, each at its latest version.
    auto name = secret_name_of(connection_id) + ".r" + std::to_string(to_unix_ms(now));
    if (auto put = secrets_.put(ctx.tenant_id, name, secret); !put) return put.error();
    std::optional<inbound_scheme> scheme;
    auto saved = store_.transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
        if (auto r = active_connection(uow, connection_id); !r) return r;
        auto reg = uow.inbound_webhooks().find(connection_id);
        if (!reg) {
            if (reg.error() == errc::not_found)
                return error{errc::not_found, "connection " + connection_id +
                                                  " has no inbound webhook; register one before rotating its secret"};
            return reg.error();
        }
        auto parsed = parse_inbound_scheme(reg->scheme);
        if (!parsed) return error{errc::storage_failure, "the stored inbound scheme is invalid: " + parsed.error().detail()};
        scheme = *parsed;
        reg->previous_secret_name = reg->secret_name;
        reg->previous_until = now + options_.secret_overlap;
        reg->secret_name = name;
        return uow.inbound_webhooks().save(*reg);
    });
    if (!saved) return saved.error();
    return inbound_endpoint{connection_id, *scheme};
}

result<std::string> inbound_gateway::payload(request_context const& ctx, std::string const& delivery_id) {
    std::string ref;
    auto stored = storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<std::optional<std::string>> {
        auto d = uow.deliveries().find(delivery_id);
        if (!d) return d.error();
        if (!d->data().payload_ref)
            return error{errc::not_found, "delivery " + delivery_id + " has no payload (raw payloads are kept 30 days)"};
        ref = *d->data().payload_ref;
        if (!storage::is_stored_payload_ref(ref)) return std::optional<std::string>();
        auto bytes = uow.deliveries().payload(delivery_id);
        if (!bytes) return bytes.error();
        return std::optional<std::string>(std::move(*bytes));
    });
    if (!stored) return stored.error();
    if (*stored) return std::move(**stored);
    return blobs_.get(ctx.tenant_id, ref);
}

result<std::vector<secret_bytes>> inbound_gateway::secrets_of(storage::inbound_endpoint_record const& e, time_point now) {
    std::vector<secret_bytes> out;
    auto const& reg = e.registration;
    auto current = secrets_.get(e.tenant_id, {secrets_.name(), e.tenant_id, reg.secret_name, 0});
    if (!current) return current.error();
    out.push_back(std::move(*current));
    if (reg.previous_secret_name && reg.previous_until && now < *reg.previous_until) {
        // A previous secret that is gone no longer verifies; that is not the sender's fault.
        auto previous = secrets_.get(e.tenant_id, {secrets_.name(), e.tenant_id, *reg.previous_secret_name, 0});
        if (previous) out.push_back(std::move(*previous));
        else if (previous.error() != errc::not_found && previous.error() != errc::invalid_state)
            return previous.error();
    }
    return out;
}

result<inbound_outcome> inbound_gateway::receive(std::string const& connection_id, inbound_request const& req) {
    inbound_outcome out;
    auto found = store_.find_inbound_endpoint(connection_id);
    if (!found) return found.error();
    if (!*found) {
        out.refusal = inbound_refusal{inbound_rejection::unknown_connection,
                                      "no active connection with an inbound webhook has this id"};
        return out;
    }
    auto const& endpoint = **found;
    out.tenant_id = endpoint.tenant_id;
    auto ctx = request_context::for_tenant(endpoint.tenant_id, "inbound-webhook");
    auto scheme = parse_inbound_scheme(endpoint.registration.scheme);
    if (!scheme) return error{errc::storage_failure, "the stored inbound scheme is invalid: " + scheme.error().detail()};
    auto unverified = std::string(to_string(*scheme)) + ".unverified";

    if (req.body.size() > options_.max_body_bytes)
        return refuse(ctx, endpoint, std::move(out), unverified,
                      {inbound_rejection::body_too_large,
                       "the body has " + std::to_string(req.body.size()) + " bytes; at most " +
                           std::to_string(options_.max_body_bytes) + " are accepted"},
                      req.body);

    auto now = clock_.now();
    auto secrets = secrets_of(endpoint, now);
    if (!secrets) return secrets.error();
    auto verdict = verify_inbound(*scheme, *secrets, req, to_unix_ms(now) / 1000, options_.tolerance_s);
    secrets->clear();
    if (!verdict) return refuse(ctx, endpoint, std::move(out), unverified, std::move(*verdict.refusal), req.body);
    auto identity = std::move(*verdict.identity);
    auto body = parse_body(req.body, req.content_type);
    if (!body)
        return refuse(ctx, endpoint, std::move(out), identity.event_type,
                      {inbound_rejection::malformed_body,
                       "the body verified but is neither JSON (at most " + std::to_string(max_json_depth) +
                           " levels deep, valid UTF-8) nor form fields"},
                      req.body);
    auto hash = crypto::sha256_hex(req.body);
    auto delivery = webhook_delivery::inbound(ctx, now, connection_id, endpoint.provider_id,
                                              identity.provider_delivery_id, identity.event_type, std::nullopt, hash);
    if (!delivery)
        return refuse(ctx, endpoint, std::move(out), unverified,
                      {inbound_rejection::malformed_signature,
                       "the vendor's delivery id or event type is unusable: " + delivery.error().detail()},
                      req.body);
    out.identity = identity;

    // Most repeats are the vendor retrying: answer them from a snapshot without a write.
    auto earlier = storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<std::optional<webhook_delivery>> {
        auto d = uow.deliveries().find_inbound(connection_id, identity.provider_delivery_id);
        if (d) return std::optional<webhook_delivery>(std::move(*d));
        if (d.error() == errc::not_found) return std::optional<webhook_delivery>();
        return d.error();
    });
    if (!earlier) return earlier.error();
    if (*earlier) return repeat(ctx, endpoint, std::move(out), **earlier, hash, req.body);

    // Small payloads commit with the delivery; large ones are written (and synced) first.
    bool in_store = req.body.size() <= options_.inline_payload_bytes;
    std::optional<std::string> blob_ref;
    if (in_store) {
        if (auto r = delivery->keep_payload(storage::stored_payload_ref(ctx.tenant_id, delivery->id())); !r) return r.error();
    } else {
        auto put = blobs_.put(ctx.tenant_id, blob_key_of(delivery->id()), req.body);
        if (!put) return put.error();
        blob_ref = *put;
        if (auto r = delivery->keep_payload(*put); !r) return r.error();
    }
    if (auto r = delivery->accept({.signature_valid = true, .tenant_resolved = true}, now, std::move(*body)); !r)
        return r.error();

    // The writer runs one unit at a time, so looking for the id and inserting it is atomic; the
    // unique index catches another process that got there first.
    std::optional<webhook_delivery> repeated;
    auto accepted = store_.transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
        auto d = uow.deliveries().find_inbound(connection_id, identity.provider_delivery_id);
        if (d) {
            repeated = std::move(*d);
            return {};
        }
        if (d.error() != errc::not_found) return d.error();
        if (auto r = uow.deliveries().save(*delivery); !r) return r;
        if (in_store) return uow.deliveries().put_payload(delivery->id(), req.body);
        return {};
    }, options_.commit);
    if (accepted && !repeated) {
        out.outcome = inbound_outcome::kind::accepted;
        out.delivery_id = delivery->id();
        return out;
    }
    if (blob_ref) (void)blobs_.remove(ctx.tenant_id, *blob_ref);
    if (!accepted && accepted.error() != errc::already_exists) return accepted.error();
    if (!repeated) {
        auto again = storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) {
            return uow.deliveries().find_inbound(connection_id, identity.provider_delivery_id);
        });
        if (!again) return again.error();
        repeated = std::move(*again);
    }
    return repeat(ctx, endpoint, std::move(out), *repeated, hash, req.body);
}

result<inbound_outcome> inbound_gateway::repeat(request_context const& ctx, storage::inbound_endpoint_record const& endpoint,
                                                inbound_outcome out, webhook_delivery const& earlier,
                                                std::string const& hash, std::string_view body) {
    if (earlier.data().payload_hash == hash) {
        out.outcome = inbound_outcome::kind::duplicate;
        out.delivery_id = earlier.id();
        return out;
    }
    auto event_type = out.identity->event_type;
    auto id = out.identity->provider_delivery_id;
    out.identity.reset();
    return refuse(ctx, endpoint, std::move(out), event_type,
                  {inbound_rejection::delivery_id_conflict,
                   "delivery id " + integration::detail::utf8_excerpt(id, 128) + " was received before (" + earlier.id() +
                       ") with a different body"},
                  body);
}

result<inbound_outcome> inbound_gateway::refuse(request_context const& ctx, storage::inbound_endpoint_record const& endpoint,
                                                inbound_outcome out, std::string const& event_type,
                                                inbound_refusal refusal, std::string_view body) {
    auto now = clock_.now();
    auto code = std::string(to_string(refusal.reason));
    auto d = webhook_delivery::refused_inbound(ctx, now, endpoint.registration.connection_id, endpoint.provider_id,
                                               event_type, code);
    if (!d) return d.error();
    failures::classification c{
        is_poison(refusal.reason) ? failures::failure_category::poison : failures::failure_category::validation,
        code,
        refusal.detail + "; the body began: " + integration::detail::utf8_excerpt(body, excerpt_bytes),
        failures::next_action::dead_letter, std::nullopt};
    auto f = failures::integration_failure::record(ctx, now, failures::failure_source::delivery, d->id(),
                                                   endpoint.provider_id, c);
    if (!f) return f.error();
    // A refusal is a record, not a promise to the sender: it need not wait for its own fsync.
    auto saved = store_.transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
        if (auto r = uow.deliveries().save(*d); !r) return r;
        return uow.failures().save(*f);
    }, durability::deferred);
    if (!saved) return saved.error();
    out.outcome = inbound_outcome::kind::rejected;
    out.delivery_id = d->id();
    out.refusal = std::move(refusal);
    return out;
}

// TODO(session 9, helper B): commit through store::transact_async instead of waiting here.
void inbound_gateway::receive(std::string const& connection_id, inbound_request const& req, outcome_handler done) {
    done(receive(connection_id, req));
}

}  // namespace integration::webhooks
