#include <integration/services/inbound_signature.hpp>

#include <integration/domain/inbound_body.hpp>
#include <integration/services/webhook_signature.hpp>

#include "../detail/crypto.hpp"
#include "../detail/form.hpp"

#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include <algorithm>
#include <array>
#include <limits>
#include <optional>
#include <utility>
#include <variant>
#include <vector>

namespace integration::webhooks {
namespace {

constexpr std::array<std::string_view, 6> scheme_names = {"standard", "github", "stripe", "slack", "twilio", "shopify"};

// Longest delivery id and event-type segment taken from a request; longer ones are refused.
constexpr std::size_t max_id_size = 256;
constexpr std::size_t max_name_size = 128;

inbound_verdict refuse(inbound_rejection reason, std::string detail) {
    return {std::nullopt, inbound_refusal{reason, std::move(detail)}};
}

bool iequals(std::string_view a, std::string_view b) noexcept {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [&](char x, char y) {
               return lower(x) == lower(y);
           });
}

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

std::optional<std::string_view> header(inbound_request const& req, std::string_view name) {
    for (auto const& h : req.headers)
        if (iequals(h.name, name)) return trim(h.value);
    return std::nullopt;
}

bool is_form(inbound_request const& req) { return body_format_of(req.media_type()) == body_format::form; }

// Unix seconds: digits only, at most 12 of them (year 33658), so that arithmetic on it never
// overflows and a millisecond timestamp is told apart from a stale one.
std::optional<std::int64_t> unix_seconds(std::string_view text) noexcept {
    if (text.empty() || text.size() > 12) return std::nullopt;
    std::int64_t v = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + (c - '0');
    }
    return v;
}

// Refuses a timestamp outside `now` ± `tolerance`, in either direction.
std::optional<inbound_verdict> check_fresh(std::int64_t ts, std::int64_t now, std::int64_t tolerance,
                                           std::string_view what) {
    constexpr auto lowest = std::numeric_limits<std::int64_t>::min();
    constexpr auto highest = std::numeric_limits<std::int64_t>::max();
    auto const from = now < lowest + tolerance ? lowest : now - tolerance;
    auto const to = now > highest - tolerance ? highest : now + tolerance;
    if (ts >= from && ts <= to) return std::nullopt;
    return refuse(inbound_rejection::stale_timestamp,
                  std::string(what) + " is " + (ts < from ? "older" : "newer") + " than the tolerance of " +
                      std::to_string(tolerance) + " s allows; the request is refused as a possible replay");
}

// Non-empty, at most `max_id_size` bytes, printable ASCII.
bool is_delivery_id(std::string_view id) noexcept {
    return !id.empty() && id.size() <= max_id_size &&
           std::all_of(id.begin(), id.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

// An event-type segment: letters, digits, `_`, `-`, `.`, `:`; at most `max_name_size` bytes.
bool is_name(std::string_view s) noexcept {
    return !s.empty() && s.size() <= max_name_size && std::all_of(s.begin(), s.end(), [](char c) {
               return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                      c == '-' || c == '.' || c == ':';
           });
}

// `text` as exactly `size` bytes of hex or standard base64; nullopt when it is not.
std::optional<secret_bytes> hex_bytes(std::string_view text, std::size_t size) {
    if (text.size() != 2 * size) return std::nullopt;
    auto bytes = crypto::from_hex(text);
    if (!bytes) return std::nullopt;
    return std::move(*bytes);
}
std::optional<secret_bytes> base64_bytes(std::string_view text, std::size_t size) {
    auto bytes = crypto::from_base64(text);
    if (!bytes || bytes->size() != size) return std::nullopt;
    return std::move(*bytes);
}
// A base64 signature of `size` bytes, read as written: a spelling no encoder writes (bits set
// after the last byte) decodes to no bytes, which match no MAC, as comparing the text would not.
std::optional<secret_bytes> base64_signature(std::string_view text, std::size_t size) {
    auto bytes = base64_bytes(text, size);
    if (bytes && !crypto::canonical_base64(text)) bytes.emplace();
    return bytes;
}

// Whether any secret's MAC equals any of `signatures`. Every pair is compared in constant time
// and none is skipped, so the time says nothing about which secret or signature matched.
template <class Mac>
bool any_matches(std::span<secret_bytes const> secrets, std::span<secret_bytes const> signatures, Mac const& mac) {
    bool matched = false;
    for (auto const& secret : secrets) {
        auto const m = mac(secret.view());
        std::string_view const expected(reinterpret_cast<char const*>(m.data()), m.size());
        for (auto const& sig : signatures) matched |= crypto::equal_constant_time(expected, sig.view());
    }
    return matched;
}

inbound_verdict mismatch(std::string_view header_name) {
    return refuse(inbound_rejection::signature_mismatch,
                  "no configured secret's signature matches " + std::string(header_name) +
                      " over the raw body; check the secret and that nothing rewrote the body");
}

// The body as a JSON object (what every JSON webhook sends), or the refusal that says why not.
std::variant<boost::json::object, inbound_verdict> json_body(std::string_view body) {
    boost::json::parse_options options;
    options.max_depth = max_body_depth;
    boost::system::error_code ec;
    auto value = boost::json::parse(body, ec, {}, options);
    if (ec == boost::json::error::too_deep)
        return refuse(inbound_rejection::malformed_body,
                      "the body is JSON nested more than " + std::to_string(max_body_depth) + " deep");
    if (ec) return refuse(inbound_rejection::malformed_body, "the body is not valid JSON (or not UTF-8): " + ec.message());
    if (!value.is_object()) return refuse(inbound_rejection::malformed_body, "the body is JSON but not an object");
    return std::move(value.as_object());
}

std::optional<std::string_view> string_field(boost::json::object const& o, std::string_view key) {
    auto const* v = o.if_contains(key);
    if (!v || !v->is_string()) return std::nullopt;
    return std::string_view(v->get_string());
}

using form = detail::form_fields;
using detail::form_params;

std::optional<std::string_view> form_value(form const& params, std::string_view name) {
    for (auto const& [k, v] : params)
        if (k == name) return std::string_view(v);
    return std::nullopt;
}

// What a scheme checks besides the signature: the clock, and whether to derive the identity.
struct checks {
    std::int64_t now;
    std::int64_t tolerance;
    bool identity;
};

// A verified request when no identity is wanted.
inbound_verdict signature_ok(std::optional<std::int64_t> ts) { return {inbound_identity{{}, {}, ts}, std::nullopt}; }

inbound_verdict empty_body() { return refuse(inbound_rejection::malformed_body, "the body is empty"); }

inbound_verdict accept(std::string delivery_id, std::string event_type, std::optional<std::int64_t> ts) {
    return {inbound_identity{std::move(delivery_id), std::move(event_type), ts}, std::nullopt};
}

// ---- Standard Webhooks (and Svix) ----

inbound_verdict verify_standard(std::span<secret_bytes const> secrets, inbound_request const& req, checks const& c) {
    // Svix sends the same scheme under svix-* names; a request names one set or the other.
    bool const svix = !header(req, "webhook-signature") && header(req, "svix-signature");
    std::array<std::string_view, 3> const names = svix ? std::array<std::string_view, 3>{"svix-id", "svix-timestamp",
                                                                                           "svix-signature"}
                                                        : std::array<std::string_view, 3>{"webhook-id", "webhook-timestamp",
                                                                                           "webhook-signature"};
    std::array<std::string_view, 3> values;
    for (std::size_t i = 0; i < names.size(); ++i) {
        auto v = header(req, names[i]);
        if (!v) return refuse(inbound_rejection::missing_signature, "the " + std::string(names[i]) + " header is missing");
        values[i] = *v;
    }
    auto const [id, ts_text, signature] = values;
    if (!is_delivery_id(id))
        return refuse(inbound_rejection::malformed_signature,
                      std::string(names[0]) + " must be 1-256 printable ASCII characters");
    auto const ts = unix_seconds(ts_text);
    if (!ts)
        return refuse(inbound_rejection::malformed_signature,
                      std::string(names[1]) + " is not a unix time in seconds (1-12 digits)");
    // At least one entry must be one this library can check; unknown versions are skipped.
    bool well_formed = false;
    std::vector<secret_bytes> v1;  // decoded once, compared as MAC bytes below
    for (std::size_t at = 0; at <= signature.size();) {
        auto const end = std::min(signature.find(' ', at), signature.size());
        auto const entry = signature.substr(at, end - at);
        at = end + 1;
        if (entry.starts_with("v1,")) {
            if (auto sig = base64_signature(entry.substr(3), 32)) {
                v1.push_back(std::move(*sig));
                well_formed = true;
            }
        }
        if (entry.starts_with("v1a,")) well_formed |= base64_bytes(entry.substr(4), 64).has_value();
    }
    if (!well_formed)
        return refuse(inbound_rejection::malformed_signature,
                      std::string(names[2]) +
                          " has no well-formed entry (v1,<base64 of 32 bytes> or v1a,<base64 of 64 bytes>)");
    if (auto stale = check_fresh(*ts, c.now, c.tolerance, names[1])) return std::move(*stale);

    // A whsec_ key MACs the message once and the MAC is compared with every v1 entry's bytes
    // (nothing encoded again); a whpk_ public key checks the v1a entries through `verify`. The
    // timestamp is signed as a number, as the vendors' libraries do.
    auto const signed_ts = std::to_string(*ts);
    bool matched = false;
    for (auto const& secret : secrets) {
        if (auto key = hmac_key(secret)) {
            matched |= any_matches({&*key, 1}, v1, [&](std::string_view k) {
                return crypto::hmac(crypto::digest::sha256, k, {id, ".", signed_ts, ".", req.body});
            });
        } else if (secret.view().starts_with("whpk_")) {
            matched |= verify(secret, id, ts_text, req.body, signature, c.now, c.tolerance).has_value();
        }
    }
    if (!matched) return mismatch(names[2]);
    if (!c.identity) return signature_ok(*ts);

    if (req.body.empty()) return empty_body();
    auto body = json_body(req.body);
    if (auto* refused = std::get_if<inbound_verdict>(&body)) return std::move(*refused);
    auto const type = string_field(std::get<boost::json::object>(body), "type");
    if (type && !is_name(*type))
        return refuse(inbound_rejection::malformed_body, "the body's \"type\" is not an event name");
    return accept(std::string(id), "standard." + std::string(type.value_or("event")), *ts);
}

// ---- GitHub ----

inbound_verdict verify_github(std::span<secret_bytes const> secrets, inbound_request const& req, checks const& c) {
    auto const signature = header(req, "X-Hub-Signature-256");
    if (!signature) return refuse(inbound_rejection::missing_signature, "the X-Hub-Signature-256 header is missing");
    auto const delivery = header(req, "X-GitHub-Delivery");
    if (!delivery) return refuse(inbound_rejection::missing_signature, "the X-GitHub-Delivery header is missing");
    auto const event = header(req, "X-GitHub-Event");
    if (!event) return refuse(inbound_rejection::missing_signature, "the X-GitHub-Event header is missing");
    if (!is_delivery_id(*delivery))
        return refuse(inbound_rejection::malformed_signature,
                      "X-GitHub-Delivery must be 1-256 printable ASCII characters");
    if (!is_name(*event)) return refuse(inbound_rejection::malformed_signature, "X-GitHub-Event is not an event name");
    auto sig = signature->starts_with("sha256=") ? hex_bytes(signature->substr(7), 32) : std::nullopt;
    if (!sig)
        return refuse(inbound_rejection::malformed_signature,
                      "X-Hub-Signature-256 must be sha256= followed by 64 hex digits");
    if (!any_matches(secrets, {&*sig, 1}, [&](std::string_view key) {
            return crypto::hmac(crypto::digest::sha256, key, {req.body});
        }))
        return mismatch("X-Hub-Signature-256");
    if (!c.identity) return signature_ok(std::nullopt);

    if (req.body.empty()) return empty_body();
    // A hook configured for form encoding sends the JSON as the `payload` parameter.
    std::string payload_json;
    std::string_view json = req.body;
    if (is_form(req)) {
        auto params = form_params(req.body);
        auto payload = params ? form_value(*params, "payload") : std::nullopt;
        if (!payload) return refuse(inbound_rejection::malformed_body, "the form body has no payload parameter");
        payload_json = *payload;
        json = payload_json;
    }
    auto body = json_body(json);
    if (auto* refused = std::get_if<inbound_verdict>(&body)) return std::move(*refused);
    auto const action = string_field(std::get<boost::json::object>(body), "action");
    if (action && !is_name(*action))
        return refuse(inbound_rejection::malformed_body, "the body's \"action\" is not an event name");
    auto type = "github." + std::string(*event);
    if (action) type.append(1, '.').append(*action);
    return accept(std::string(*delivery), std::move(type), std::nullopt);
}

// ---- Stripe ----

inbound_verdict verify_stripe(std::span<secret_bytes const> secrets, inbound_request const& req, checks const& c) {
    auto const signature = header(req, "Stripe-Signature");
    if (!signature) return refuse(inbound_rejection::missing_signature, "the Stripe-Signature header is missing");
    std::optional<std::string_view> ts_text;
    std::vector<secret_bytes> v1;
    for (std::size_t at = 0; at <= signature->size();) {
        auto const end = std::min(signature->find(',', at), signature->size());
        auto const item = signature->substr(at, end - at);
        at = end + 1;
        auto const eq = item.find('=');
        if (eq == std::string_view::npos)
            return refuse(inbound_rejection::malformed_signature,
                          "Stripe-Signature must be a comma-separated list of key=value items");
        auto const key = item.substr(0, eq), value = item.substr(eq + 1);
        if (key == "t") {
            if (ts_text)
                return refuse(inbound_rejection::malformed_signature, "Stripe-Signature has more than one t=");
            ts_text = value;
        } else if (key == "v1") {
            auto sig = hex_bytes(value, 32);
            if (!sig)
                return refuse(inbound_rejection::malformed_signature,
                              "a v1= in Stripe-Signature is not 64 hex digits");
            v1.push_back(std::move(*sig));
        }  // v0 and future schemes do not count
    }
    if (!ts_text) return refuse(inbound_rejection::malformed_signature, "Stripe-Signature has no t= timestamp");
    auto const ts = unix_seconds(*ts_text);
    if (!ts)
        return refuse(inbound_rejection::malformed_signature,
                      "Stripe-Signature's t= is not a unix time in seconds (1-12 digits)");
    if (v1.empty()) return refuse(inbound_rejection::malformed_signature, "Stripe-Signature has no v1= signature");
    if (auto stale = check_fresh(*ts, c.now, c.tolerance, "Stripe-Signature's t=")) return std::move(*stale);
    // The key is the whole secret string, whsec_ included (Stripe does not decode it); the
    // timestamp is signed as a number, as Stripe's library reads it.
    auto const signed_ts = std::to_string(*ts);
    if (!any_matches(secrets, v1, [&](std::string_view key) {
            return crypto::hmac(crypto::digest::sha256, key, {signed_ts, ".", req.body});
        }))
        return mismatch("Stripe-Signature");
    if (!c.identity) return signature_ok(*ts);

    if (req.body.empty()) return empty_body();
    auto body = json_body(req.body);
    if (auto* refused = std::get_if<inbound_verdict>(&body)) return std::move(*refused);
    auto const& event = std::get<boost::json::object>(body);
    auto const id = string_field(event, "id");
    if (!id || !is_delivery_id(*id))
        return refuse(inbound_rejection::malformed_body, "the Stripe event has no \"id\" (1-256 printable characters)");
    auto const type = string_field(event, "type");
    if (!type || !is_name(*type))
        return refuse(inbound_rejection::malformed_body, "the Stripe event has no \"type\" that is an event name");
    return accept(std::string(*id), "stripe." + std::string(*type), *ts);
}

// ---- Slack ----

inbound_verdict verify_slack(std::span<secret_bytes const> secrets, inbound_request const& req, checks const& c) {
    auto const signature = header(req, "X-Slack-Signature");
    if (!signature) return refuse(inbound_rejection::missing_signature, "the X-Slack-Signature header is missing");
    auto const ts_text = header(req, "X-Slack-Request-Timestamp");
    if (!ts_text) return refuse(inbound_rejection::missing_signature, "the X-Slack-Request-Timestamp header is missing");
    auto const ts = unix_seconds(*ts_text);
    if (!ts)
        return refuse(inbound_rejection::malformed_signature,
                      "X-Slack-Request-Timestamp is not a unix time in seconds (1-12 digits)");
    auto sig = signature->starts_with("v0=") ? hex_bytes(signature->substr(3), 32) : std::nullopt;
    if (!sig) return refuse(inbound_rejection::malformed_signature, "X-Slack-Signature must be v0= followed by 64 hex digits");
    if (auto stale = check_fresh(*ts, c.now, c.tolerance, "X-Slack-Request-Timestamp")) return std::move(*stale);
    if (!any_matches(secrets, {&*sig, 1}, [&](std::string_view key) {
            return crypto::hmac(crypto::digest::sha256, key, {"v0:", *ts_text, ":", req.body});
        }))
        return mismatch("X-Slack-Signature");
    if (!c.identity) return signature_ok(*ts);

    if (req.body.empty()) return empty_body();
    std::string type;
    if (is_form(req)) {
        // Slash commands are plain forms; interactive components send their JSON as `payload`.
        auto params = form_params(req.body);
        if (!params) return refuse(inbound_rejection::malformed_body, "the body is not form encoding");
        if (auto payload = form_value(*params, "payload")) {
            auto body = json_body(*payload);
            if (auto* refused = std::get_if<inbound_verdict>(&body)) return std::move(*refused);
            auto const t = string_field(std::get<boost::json::object>(body), "type");
            if (!t || !is_name(*t))
                return refuse(inbound_rejection::malformed_body, "the payload has no \"type\" that is an event name");
            type = *t;
        } else {
            type = "command";
        }
    } else {
        auto body = json_body(req.body);
        if (auto* refused = std::get_if<inbound_verdict>(&body)) return std::move(*refused);
        auto const& event = std::get<boost::json::object>(body);
        auto const t = string_field(event, "type");
        if (!t || !is_name(*t))
            return refuse(inbound_rejection::malformed_body, "the body has no \"type\" that is an event name");
        // Saving an Events API request URL: Slack sends a signed challenge and takes the URL only
        // when the answer echoes it.
        if (*t == "url_verification") {
            auto const challenge = string_field(event, "challenge");
            if (!challenge || !is_delivery_id(*challenge))
                return refuse(inbound_rejection::malformed_body,
                              "a url_verification has no \"challenge\" (1-256 printable characters)");
            auto out = accept({}, "slack.url_verification", *ts);
            out.identity->challenge = std::string(*challenge);
            return out;
        }
        // A retry of an Events API event (X-Slack-Retry-Num) is signed anew, with a new
        // timestamp, and carries the same signed event_id: that is the delivery.
        if (*t == "event_callback") {
            auto const id = string_field(event, "event_id");
            if (!id || !is_delivery_id(*id))
                return refuse(inbound_rejection::malformed_body,
                              "an event_callback has no \"event_id\" (1-256 printable characters)");
            return accept(std::string(*id), "slack.event_callback", *ts);
        }
        type = *t;
    }
    return accept(crypto::sha256_hex({*ts_text, ":", req.body}), "slack." + type, *ts);
}

// ---- Twilio ----

inbound_verdict verify_twilio(std::span<secret_bytes const> secrets, inbound_request const& req, checks const& c) {
    auto const signature = header(req, "X-Twilio-Signature");
    if (!signature) return refuse(inbound_rejection::missing_signature, "the X-Twilio-Signature header is missing");
    // Webhooks signed with a SharedKey say so, and with which HMAC, in a settings header
    // (`key=webhooks_sharedkey_...,algorithm=HMAC_SHA256`); without one it is the Auth Token's
    // HMAC-SHA1. Either needs the secret, so the header choosing one gains a forger nothing.
    auto digest = crypto::digest::sha1;
    std::size_t digest_bytes = 20;
    if (auto settings = header(req, "X-Twilio-Webhooks-Signature-Settings")) {
        std::string_view rest = *settings;
        while (!rest.empty()) {
            auto const comma = std::min(rest.find(','), rest.size());
            auto part = rest.substr(0, comma);
            rest.remove_prefix(std::min(comma + 1, rest.size()));
            auto const eq = part.find('=');
            if (eq == std::string_view::npos || trim(part.substr(0, eq)) != "algorithm") continue;
            auto const algorithm = trim(part.substr(eq + 1));
            if (iequals(algorithm, "HMAC_SHA256")) {
                digest = crypto::digest::sha256;
                digest_bytes = 32;
            } else if (!iequals(algorithm, "HMAC_SHA1")) {
                return refuse(inbound_rejection::malformed_signature,
                              "X-Twilio-Webhooks-Signature-Settings names an algorithm other than HMAC_SHA1 or HMAC_SHA256");
            }
        }
    }
    auto sig = base64_signature(*signature, digest_bytes);
    if (!sig)
        return refuse(inbound_rejection::malformed_signature,
                      digest_bytes == 20 ? "X-Twilio-Signature is not standard base64 of 20 bytes (HMAC-SHA1)"
                                         : "X-Twilio-Signature is not standard base64 of 32 bytes (HMAC-SHA256)");
    if (req.url.empty())
        return refuse(inbound_rejection::signature_mismatch,
                      "Twilio signs the URL it called, and none is known here; configure the public base URL");
    auto const url = boost::urls::parse_absolute_uri(req.url);
    if (!url) return refuse(inbound_rejection::signature_mismatch, "the URL Twilio called is not an absolute URL");

    // A URL that carries bodySHA256 signs a body that is not a form: the URL alone is MACed and
    // the body must hash to it, whatever its Content-Type says (a form body there would be
    // verified by the URL's signature alone, its own bytes unsigned). Form bodies: the URL, then
    // every parameter sorted by name (then value), name and value with no separators.
    std::optional<std::string> body_sha;
    for (auto const& p : url->params())
        if (p.key == "bodySHA256") body_sha = p.value;
    std::optional<form> params;
    std::vector<form::value_type const*> sorted;
    std::vector<std::string_view> signed_parts{req.url};
    if (body_sha) {
        if (!crypto::equal_constant_time(crypto::sha256_hex(req.body), *body_sha))
            return refuse(inbound_rejection::signature_mismatch, "the body's SHA-256 is not the URL's bodySHA256");
    } else if (is_form(req)) {
        params = form_params(req.body);
        // What Twilio signs is read from the form: a body that is not one was signed by nobody.
        if (!params)
            return refuse(inbound_rejection::signature_mismatch,
                          "the body is not form encoding, so no Twilio signature can cover it");
        // Sorted in place by pointer, then MACed part by part: nothing is copied.
        sorted.reserve(params->size());
        for (auto const& kv : *params) sorted.push_back(&kv);
        std::sort(sorted.begin(), sorted.end(), [](auto const* a, auto const* b) { return *a < *b; });
        signed_parts.reserve(2 * sorted.size() + 1);
        for (auto const* kv : sorted) {
            signed_parts.push_back(kv->first);
            signed_parts.push_back(kv->second);
        }
    } else {
        return refuse(inbound_rejection::malformed_signature,
                      "a Twilio request that is not a form must carry bodySHA256 in its URL");
    }
    auto matches = [&] {
        return any_matches(secrets, {&*sig, 1}, [&](std::string_view key) {
            return crypto::hmac(digest, key, std::span<std::string_view const>(signed_parts));
        });
    };
    bool matched = matches();
    if (!matched) {
        // Twilio signs the URL as configured there, which may spell the scheme's default port
        // where the public URL does not, or the other way round; its own validator tries both.
        boost::urls::url other(*url);
        auto const default_port = url->scheme_id() == boost::urls::scheme::https ? "443" : "80";
        if (!other.has_port()) other.set_port(default_port);
        else if (other.port() == default_port) other.remove_port();
        if (other.buffer() != req.url) {
            signed_parts[0] = other.buffer();
            matched = matches();
            signed_parts[0] = req.url;  // the delivery id is made from the URL as received
        }
    }
    if (!matched) return mismatch("X-Twilio-Signature");
    if (!c.identity) return signature_ok(std::nullopt);

    if (req.body.empty()) return empty_body();
    // Messaging webhooks carry MessageSid (SmsSid in older ones), voice webhooks CallSid. A status
    // callback of a message sent (queued, sent, delivered, failed...) carries the same ids as a
    // message received: its status tells them apart, so that nobody answers their own sends.
    std::string type = "twilio.event";
    if (params && (form_value(*params, "MessageSid") || form_value(*params, "SmsSid"))) {
        auto status = form_value(*params, "MessageStatus");
        if (!status) status = form_value(*params, "SmsStatus");
        type = !status || *status == "received" ? "twilio.sms.received" : "twilio.sms.status";
    } else if (params && form_value(*params, "CallSid"))
        type = "twilio.voice.call";
    // Twilio sends no id: the delivery is what it signed. Bodies that spell the same parameters
    // differently (order, encoding, empty pairs) carry the same signature, so they are one
    // delivery, never a new one for each spelling.
    return accept(crypto::sha256_hex(std::span<std::string_view const>(signed_parts)), std::move(type), std::nullopt);
}

// ---- Shopify ----

inbound_verdict verify_shopify(std::span<secret_bytes const> secrets, inbound_request const& req, checks const& c) {
    auto const signature = header(req, "X-Shopify-Hmac-Sha256");
    if (!signature) return refuse(inbound_rejection::missing_signature, "the X-Shopify-Hmac-Sha256 header is missing");
    auto const id = header(req, "X-Shopify-Webhook-Id");
    if (!id) return refuse(inbound_rejection::missing_signature, "the X-Shopify-Webhook-Id header is missing");
    auto const topic = header(req, "X-Shopify-Topic");
    if (!topic) return refuse(inbound_rejection::missing_signature, "the X-Shopify-Topic header is missing");
    if (!is_delivery_id(*id))
        return refuse(inbound_rejection::malformed_signature,
                      "X-Shopify-Webhook-Id must be 1-256 printable ASCII characters");
    std::string type(*topic);
    std::replace(type.begin(), type.end(), '/', '.');
    if (!is_name(type)) return refuse(inbound_rejection::malformed_signature, "X-Shopify-Topic is not a topic name");
    auto sig = base64_signature(*signature, 32);
    if (!sig)
        return refuse(inbound_rejection::malformed_signature,
                      "X-Shopify-Hmac-Sha256 is not standard base64 of 32 bytes (HMAC-SHA256)");
    if (!any_matches(secrets, {&*sig, 1}, [&](std::string_view key) {
            return crypto::hmac(crypto::digest::sha256, key, {req.body});
        }))
        return mismatch("X-Shopify-Hmac-Sha256");
    if (!c.identity) return signature_ok(std::nullopt);

    if (req.body.empty()) return empty_body();
    auto body = json_body(req.body);
    if (auto* refused = std::get_if<inbound_verdict>(&body)) return std::move(*refused);
    return accept(std::string(*id), "shopify." + type, std::nullopt);
}

}  // namespace

std::string_view inbound_request::media_type() const noexcept {
    if (!content_type.empty()) return content_type;
    return header(*this, "Content-Type").value_or("");
}

result<inbound_scheme> parse_inbound_scheme(std::string_view name) {
    for (std::size_t i = 0; i < scheme_names.size(); ++i)
        if (name == scheme_names[i]) return static_cast<inbound_scheme>(i);
    return error{errc::invalid_argument,
                 "the inbound signature scheme must be one of standard, github, stripe, slack, twilio, shopify"};
}

std::string_view to_string(inbound_scheme s) noexcept {
    auto const i = static_cast<std::size_t>(s);
    return i < scheme_names.size() ? scheme_names[i] : "unknown";
}

std::string_view to_string(inbound_rejection r) noexcept {
    switch (r) {
        case inbound_rejection::missing_signature: return "missing-signature";
        case inbound_rejection::malformed_signature: return "malformed-signature";
        case inbound_rejection::stale_timestamp: return "stale-timestamp";
        case inbound_rejection::signature_mismatch: return "signature-mismatch";
        case inbound_rejection::malformed_body: return "malformed-body";
        case inbound_rejection::unknown_connection: return "unknown-connection";
        case inbound_rejection::body_too_large: return "body-too-large";
        case inbound_rejection::delivery_id_conflict: return "delivery-id-conflict";
    }
    return "unknown";
}

namespace {

inbound_verdict verify_scheme(inbound_scheme scheme, std::span<secret_bytes const> secrets, inbound_request const& req,
                       checks const& c) {
    if (secrets.empty())
        return refuse(inbound_rejection::signature_mismatch, "no verification secret is configured for this endpoint");
    switch (scheme) {
        case inbound_scheme::standard: return verify_standard(secrets, req, c);
        case inbound_scheme::github: return verify_github(secrets, req, c);
        case inbound_scheme::stripe: return verify_stripe(secrets, req, c);
        case inbound_scheme::slack: return verify_slack(secrets, req, c);
        case inbound_scheme::twilio: return verify_twilio(secrets, req, c);
        case inbound_scheme::shopify: return verify_shopify(secrets, req, c);
    }
    return refuse(inbound_rejection::malformed_signature, "unknown signature scheme");
}

}  // namespace

inbound_verdict verify_inbound(inbound_scheme scheme, std::span<secret_bytes const> secrets, inbound_request const& req,
                               std::int64_t now_unix, std::int64_t tolerance_s) {
    return verify_scheme(scheme, secrets, req, {now_unix, std::clamp(tolerance_s, min_tolerance_s, max_tolerance_s), true});
}

std::optional<inbound_refusal> check_inbound_signature(inbound_scheme scheme, std::span<secret_bytes const> secrets,
                                                       inbound_request const& req, std::int64_t now_unix,
                                                       std::int64_t tolerance_s) {
    return verify_scheme(scheme, secrets, req, {now_unix, std::clamp(tolerance_s, min_tolerance_s, max_tolerance_s), false})
        .refusal;
}

}  // namespace integration::webhooks
