#ifndef INTEGRATION_SERVICES_INBOUND_GATEWAY_HPP
#define INTEGRATION_SERVICES_INBOUND_GATEWAY_HPP

/** @file
 *  The inbound webhook gateway (the seed's WebhookGatewayService, inbound side): registers a
 *  connection's scheme and secret, and receives what vendors send. A delivery is Accepted only
 *  after its signature verified and its tenant resolved; it is idempotent on the vendor's delivery
 *  id; the raw payload is kept; each accepted delivery becomes one canonical event in the outbox.
 */

#include <integration/domain/delivery.hpp>
#include <integration/export.hpp>
#include <integration/ports/blob_store.hpp>
#include <integration/ports/clock.hpp>
#include <integration/ports/secret_store.hpp>
#include <integration/ports/store.hpp>
#include <integration/services/inbound_signature.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace integration::webhooks {

/** At most this many secrets replaced by rotations verify beside the current one: every
 *  verification of a signature that fails tries each. */
inline constexpr std::size_t max_replaced_secrets = 8;

/** Options of the gateway. */
struct INTEGRATION_EXPORT inbound_gateway_options {
    std::int64_t tolerance_s = 300;      ///< Clamped to [`min_tolerance_s`, `max_tolerance_s`].
    std::size_t max_body_bytes = 1 << 20;  ///< Larger bodies are refused (`body_too_large`).
    /** Payloads up to this size are stored in the database with the delivery (one commit);
     *  larger ones go to the blob store before the commit that references them. */
    std::size_t inline_payload_bytes = 64 * 1024;
    /** How long a secret replaced by `rotate_secret` still verifies. */
    std::chrono::milliseconds secret_overlap{std::chrono::hours(24)};
    /** Durability of the commit that accepts a delivery: `immediate` (the default) means the
     *  answer is sent only once the delivery is on disk; concurrent receives share one fsync. */
    durability commit = durability::immediate;
    /** How long a connection's registration and its decrypted secrets are reused in memory
     *  before they are read again; zero reads them on every receive. `register_endpoint` and
     *  `rotate_secret` through this gateway take effect at once, the end of a rotation's overlap
     *  too; a retirement or a change made elsewhere (another process) is seen within this time. */
    std::chrono::milliseconds endpoint_cache_ttl{std::chrono::seconds(1)};
    /** Refusals of one connection are recorded (a Failed delivery and its IntegrationFailure)
     *  at most this many at once, then one per `refusal_record_interval`: anyone who knows a
     *  connection's URL can send them, anyone holding one signed request can send it again with
     *  another Content-Type or delivery id, and each record is kept for months. One beyond is
     *  answered the same but writes nothing; the next one recorded says how many were not.
     *  Those whose signature verified (a malformed body, a conflicting delivery id) have a
     *  budget of their own. Per process (kept in memory). */
    std::size_t refusal_record_burst = 20;
    std::chrono::milliseconds refusal_record_interval{std::chrono::seconds(6)};  ///< Positive.
};

/** What `receive` did. */
struct inbound_outcome {
    /** `challenge`: a verified handshake (Slack's `url_verification`), stored nowhere; the
     *  answer echoes `identity->challenge`. */
    enum class kind { accepted, duplicate, rejected, challenge };
    kind outcome = kind::rejected;
    /** Accepted / duplicate: the delivery; rejected: its record, empty when none was written (an
     *  unknown connection, or past `refusal_record_burst`). */
    std::string delivery_id;
    std::string tenant_id;                    ///< Empty when the connection was not resolved.
    std::optional<inbound_identity> identity;  ///< Accepted / duplicate / challenge.
    std::optional<inbound_refusal> refusal;    ///< Rejected.
};

/** The registration a connection answers with. */
struct inbound_endpoint {
    std::string connection_id;
    inbound_scheme scheme;
};

/** Receives vendors' webhooks.
 *
 *  @par Example
 *  @code
 *  p->inbound().register_endpoint(ctx, "conn-1", inbound_scheme::github, secret_bytes("s3cret"));
 *  auto out = p->inbound().receive("conn-1", {headers, body, url});  // from the HTTP server
 *  @endcode
 */
class INTEGRATION_EXPORT inbound_gateway {
public:
    inbound_gateway(storage::store& store, credentials::secret_store& secrets, blobs::blob_store& blobs,
                    clock const& clock, inbound_gateway_options options = {});
    ~inbound_gateway();
    inbound_gateway(inbound_gateway const&) = delete;
    inbound_gateway& operator=(inbound_gateway const&) = delete;

    /** Registers (or replaces) the connection's scheme and secret; the secret goes to the secret
     *  store only. The connection must exist in `ctx`'s tenant and not be retired. */
    result<inbound_endpoint> register_endpoint(request_context const& ctx, std::string const& connection_id,
                                               inbound_scheme scheme, secret_bytes secret);
    /** Replaces the secret; the one replaced keeps verifying for `secret_overlap`, and so does
     *  each secret an earlier rotation replaced until its own overlap ends. `errc::conflict` when
     *  `max_replaced_secrets` are still verifying (registering again replaces them all). */
    result<inbound_endpoint> rotate_secret(request_context const& ctx, std::string const& connection_id,
                                           secret_bytes secret);

    /** Receives one request on `connection_id` (unauthenticated: the connection names the tenant).
     *  Accepted: a delivery (Inbound, Accepted, signature Valid) with its payload and one canonical
     *  event, committed together. Duplicate: the same delivery id and body again (nothing new).
     *  Rejected: an unknown or retired connection touches no tenant's data; any other refusal of
     *  a resolved connection is recorded as a Failed delivery with an IntegrationFailure
     *  (Validation; Poison for malformed input) holding at most a capped excerpt of the body,
     *  within `refusal_record_burst`.
     *  An error (not a refusal) is a store, vault or blob failure: nothing was accepted.
     *  Waits for the asynchronous `receive` below. */
    result<inbound_outcome> receive(std::string const& connection_id, inbound_request const& req);

    using outcome_handler = std::function<void(result<inbound_outcome>)>;
    /** The same as `receive` above, without a thread waiting for the commit: verification runs on
     *  the calling thread, the delivery commits in a group commit shared with every concurrent
     *  receive, and `done` is told the outcome once that commit is durable (per `commit`; a
     *  duplicate once the delivery it repeats is), on the store's writer thread, or on the
     *  caller's before this returns when nothing is written (keep it short; never call the store
     *  from it). `req` is read before this returns. Dedupe holds across both forms and while the
     *  first delivery still waits for its commit: the writer looks the vendor's delivery id up in
     *  the same unit that inserts it. A payload larger than `inline_payload_bytes` is written to
     *  the blob store on the calling thread first. The store, the blob store and the clock must
     *  outlive every pending receive. */
    void receive(std::string const& connection_id, inbound_request const& req, outcome_handler done);
    /** Whether the asynchronous `receive` on `connection_id` of a body of `body_bytes` returns
     *  without blocking: the registration and its secrets are cached (and stay so a moment
     *  longer) and the payload commits with its delivery. A server calls it on an event-loop
     *  thread to decide whether to `receive` there. */
    bool receives_without_blocking(std::string const& connection_id, std::size_t body_bytes) const;
    /** The raw payload of an inbound delivery of `ctx`'s tenant, as received (kept in the store
     *  or the blob store, per its `payloadRef`); `errc::not_found` once retention purged it. */
    result<std::string> payload(request_context const& ctx, std::string const& delivery_id);

    /** Drops what this gateway keeps in memory of a connection (its registration and secrets):
     *  the next receive reads them again, so a change made elsewhere (a retirement) counts at once. */
    void forget(std::string const& connection_id);

private:
    struct endpoint;        // a registration with its decrypted secrets, as receives use it
    struct endpoint_cache;  // endpoints by connection id, for `endpoint_cache_ttl`
    struct refusal_budget;  // refusals recorded per connection (the writer's units share it)
    result<std::shared_ptr<endpoint const>> endpoint_of(std::string const& connection_id, time_point now);
    void refuse(request_context const& ctx, endpoint const& e, inbound_outcome out, std::string const& event_type,
                inbound_refusal refusal, std::string_view body, signature_status signature, outcome_handler done);

    storage::store& store_;
    credentials::secret_store& secrets_;
    blobs::blob_store& blobs_;
    clock const& clock_;
    inbound_gateway_options options_;
    std::unique_ptr<endpoint_cache> cache_;
    std::shared_ptr<refusal_budget> budget_;
};

}  // namespace integration::webhooks

#endif
