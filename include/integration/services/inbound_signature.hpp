#ifndef INTEGRATION_SERVICES_INBOUND_SIGNATURE_HPP
#define INTEGRATION_SERVICES_INBOUND_SIGNATURE_HPP

/** @file
 *  Verifying what vendors send: the six inbound signature schemes (Standard Webhooks `v1`/`v1a`,
 *  GitHub, Stripe, Slack, Twilio, Shopify) over the raw bytes, and the delivery's identity (the
 *  vendor's delivery id and the canonical event type). Pure functions: no I/O, no allocation of
 *  secrets, safe on any input (every parser is fuzzed).
 */

#include <integration/core/error.hpp>
#include <integration/core/secret_bytes.hpp>
#include <integration/export.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace integration::webhooks {

/** The signature scheme an inbound webhook registration names. */
enum class inbound_scheme { standard, github, stripe, slack, twilio, shopify };

/** "standard", "github", "stripe", "slack", "twilio", "shopify"; anything else is
 *  `errc::invalid_argument`. */
INTEGRATION_EXPORT result<inbound_scheme> parse_inbound_scheme(std::string_view name);
INTEGRATION_EXPORT std::string_view to_string(inbound_scheme s) noexcept;

/** One request header as received; names compare case-insensitively. */
struct header_field {
    std::string_view name;
    std::string_view value;
};

/** What the vendor sent, exactly as received. */
struct inbound_request {
    std::span<header_field const> headers;
    std::string_view body;  ///< The raw bytes; never a re-serialised form.
    /** The full URL the vendor called, with its query string (Twilio signs it): the configured
     *  public base URL + the request target. */
    std::string_view url;
    std::string_view content_type;  ///< Twilio: form parameters are signed only for form bodies.

    /** `content_type`, else the `Content-Type` header: what verification and parsing both read. */
    std::string_view media_type() const noexcept;
};

/** Why a request is refused. Stable names (see `to_string`) for metrics and problem types. */
enum class inbound_rejection {
    missing_signature,      ///< The scheme's signature header (or timestamp / id header) is absent.
    malformed_signature,    ///< A header is present but cannot be parsed (no `t=`, odd hex, bad base64, ...).
    stale_timestamp,        ///< The timestamp is outside the tolerance (either direction).
    signature_mismatch,     ///< Well-formed, but no secret's signature matches.
    malformed_body,         ///< Verified, but the body does not give what the scheme needs (Stripe's `id`).
    unknown_connection,     ///< No active connection with an inbound registration has this id.
    body_too_large,         ///< Over the configured body limit.
    delivery_id_conflict,   ///< The vendor's delivery id was seen before with a different body.
};
/** "missing-signature", "malformed-signature", "stale-timestamp", "signature-mismatch",
 *  "malformed-body", "unknown-connection", "body-too-large", "delivery-id-conflict". */
INTEGRATION_EXPORT std::string_view to_string(inbound_rejection r) noexcept;

/** A refusal: the reason and a detail for logs and the problem body (never a secret, never more
 *  than a short excerpt of the unverified request). */
struct inbound_refusal {
    inbound_rejection reason;
    std::string detail;
};

/** Who the delivery is, once verified. */
struct inbound_identity {
    /** Dedupe key: GitHub `X-GitHub-Delivery`, Standard `webhook-id`, Shopify
     *  `X-Shopify-Webhook-Id`, Stripe the event `id` in the body, Slack the body's `event_id` for
     *  an `event_callback` (its retries are signed anew) and otherwise the hex SHA-256 of
     *  `{timestamp}:{body}`, Twilio the hex SHA-256 of what it signed (the URL, then the sorted
     *  decoded parameters of a form), so that every spelling of one signed form is one delivery. */
    std::string provider_delivery_id;
    /** Canonical, provider-prefixed event type: `github.<X-GitHub-Event>[.<body "action">]`
     *  (`github.pull_request.opened`), `stripe.<body "type">`, `shopify.<X-Shopify-Topic, / as .>`
     *  (`shopify.orders.create`), `slack.<body "type">` for JSON (`slack.event_callback`) or a
     *  form's `payload`, `slack.command` for a slash command, `twilio.sms.received` (the form has
     *  MessageSid or SmsSid, and no MessageStatus/SmsStatus but `received`), `twilio.sms.status`
     *  (a sent message's status callback), `twilio.voice.call` (CallSid) or `twilio.event`,
     *  `standard.<body "type">` (or `standard.event`). Bodies are JSON objects (GitHub's may be a
     *  form with `payload`; Twilio's a form, or covered by `bodySHA256` in the URL); an empty or
     *  unparseable body, or JSON nested deeper than 64, is `malformed_body`. */
    std::string event_type;
    /** The timestamp the signature covered (unix seconds), when the scheme has one. */
    std::optional<std::int64_t> timestamp;
    /** Set for a handshake that is answered and never stored: Slack's `url_verification`, whose
     *  `challenge` the answer echoes (the delivery id is then empty). */
    std::optional<std::string> challenge;
};

/** The outcome of `verify_inbound`: an identity, or a refusal. */
struct inbound_verdict {
    std::optional<inbound_identity> identity;  ///< Set when the request verified.
    std::optional<inbound_refusal> refusal;    ///< Set otherwise.
    explicit operator bool() const noexcept { return identity.has_value(); }
};

/** The smallest and largest tolerance a verifier accepts: it can be tightened or widened, never
 *  switched off. */
inline constexpr std::int64_t min_tolerance_s = 1;
inline constexpr std::int64_t max_tolerance_s = 3600;

/** Verifies `req` under `scheme` with any of `secrets` (several while a secret rotates; each is
 *  compared in constant time, whatever its length) and, for schemes with a timestamp, checks it
 *  against `now_unix` within `tolerance_s` in both directions (clamped to
 *  [`min_tolerance_s`, `max_tolerance_s`]); then derives the identity. Standard Webhooks accepts
 *  `webhook-*` and `svix-*` header names; a `whpk_` secret checks `v1a` Ed25519 entries. */
INTEGRATION_EXPORT inbound_verdict verify_inbound(inbound_scheme scheme, std::span<secret_bytes const> secrets,
                                                  inbound_request const& req, std::int64_t now_unix,
                                                  std::int64_t tolerance_s = 300);

/** The signature and timestamp checks of `verify_inbound` alone, without reading the body:
 *  nullopt when `req` verifies, else the refusal. For the vendors' test vectors (their bodies are
 *  not whole events) and for measuring the cost of verification by itself. */
INTEGRATION_EXPORT std::optional<inbound_refusal> check_inbound_signature(inbound_scheme scheme, std::span<secret_bytes const> secrets,
                                                       inbound_request const& req, std::int64_t now_unix,
                                                       std::int64_t tolerance_s = 300);

}  // namespace integration::webhooks

#endif
