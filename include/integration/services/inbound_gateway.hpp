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
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace integration::webhooks {

/** Options of the gateway. */
struct INTEGRATION_EXPORT inbound_gateway_options {
    std::int64_t tolerance_s = 300;      ///< Clamped to [`min_tolerance_s`, `max_tolerance_s`].
    std::size_t max_body_bytes = 1 << 20;  ///< Larger bodies are refused (`body_too_large`).
    /** Payloads up to this size are stored in the database with the delivery (one commit);
     *  larger ones go to the blob store before the commit that references them. */
    std::size_t inline_payload_bytes = 64 * 1024;
    /** How long the previous secret still verifies after `rotate_secret`. */
    std::chrono::milliseconds secret_overlap{std::chrono::hours(24)};
    /** Durability of the commit that accepts a delivery: `immediate` (the default) means the
     *  answer is sent only once the delivery is on disk; concurrent receives share one fsync. */
    durability commit = durability::immediate;
};

/** What `receive` did. */
struct inbound_outcome {
    enum class kind { accepted, duplicate, rejected };
    kind outcome = kind::rejected;
    std::string delivery_id;                  ///< Accepted / duplicate: the delivery; rejected: its record, if any.
    std::string tenant_id;                    ///< Empty when the connection was not resolved.
    std::optional<inbound_identity> identity;  ///< Accepted / duplicate.
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

    /** Registers (or replaces) the connection's scheme and secret; the secret goes to the secret
     *  store only. The connection must exist in `ctx`'s tenant and not be retired. */
    result<inbound_endpoint> register_endpoint(request_context const& ctx, std::string const& connection_id,
                                               inbound_scheme scheme, secret_bytes secret);
    /** Replaces the secret; the previous one keeps verifying for `secret_overlap`. */
    result<inbound_endpoint> rotate_secret(request_context const& ctx, std::string const& connection_id,
                                           secret_bytes secret);

    /** Receives one request on `connection_id` (unauthenticated: the connection names the tenant).
     *  Accepted: a delivery (Inbound, Accepted, signature Valid) with its payload and one canonical
     *  event, committed together. Duplicate: the same delivery id and body again (nothing new).
     *  Rejected: an unknown or retired connection touches no tenant's data; any other refusal of
     *  a resolved connection is recorded as a Failed delivery with an IntegrationFailure
     *  (Validation; Poison for malformed input) holding at most a capped excerpt of the body.
     *  An error (not a refusal) is a store, vault or blob failure: nothing was accepted. */
    result<inbound_outcome> receive(std::string const& connection_id, inbound_request const& req);

    using outcome_handler = std::function<void(result<inbound_outcome>)>;
    /** The same as `receive` above, without a thread waiting for the commit: verification runs on
     *  the calling thread, the delivery commits in a group commit shared with every concurrent
     *  receive, and `done` is told the outcome once that commit is durable (per `commit`), on the
     *  store's thread or the caller's (keep it short). `req` is read before this returns. */
    void receive(std::string const& connection_id, inbound_request const& req, outcome_handler done);
    /** The raw payload of an inbound delivery of `ctx`'s tenant, as received (kept in the store
     *  or the blob store, per its `payloadRef`); `errc::not_found` once retention purged it. */
    result<std::string> payload(request_context const& ctx, std::string const& delivery_id);

private:
    result<std::vector<secret_bytes>> secrets_of(storage::inbound_endpoint_record const& e, time_point now);
    result<inbound_outcome> repeat(request_context const& ctx, storage::inbound_endpoint_record const& endpoint,
                                   inbound_outcome out, webhook_delivery const& earlier, std::string const& hash,
                                   std::string_view body);
    result<inbound_outcome> refuse(request_context const& ctx, storage::inbound_endpoint_record const& endpoint,
                                   inbound_outcome out, std::string const& event_type, inbound_refusal refusal,
                                   std::string_view body);

    storage::store& store_;
    credentials::secret_store& secrets_;
    blobs::blob_store& blobs_;
    clock const& clock_;
    inbound_gateway_options options_;
};

}  // namespace integration::webhooks

#endif
