#ifndef INTEGRATION_SERVICES_SUBSCRIPTION_SERVICE_HPP
#define INTEGRATION_SERVICES_SUBSCRIPTION_SERVICE_HPP

/** @file
 *  The webhook subscription service: subscribe, read, deactivate, reactivate, rotate the signing
 *  secret, and recover (replay every failed delivery since a time), every call in the caller's tenant.
 */

#include <integration/core/secret_bytes.hpp>
#include <integration/domain/subscription.hpp>
#include <integration/export.hpp>
#include <integration/outbound/redirects.hpp>
#include <integration/ports/clock.hpp>
#include <integration/ports/secret_store.hpp>
#include <integration/ports/store.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace integration::webhooks {

/** Options of the subscription service. */
struct subscription_service_options {
    /** How long a secret replaced by a rotation keeps signing (each for its own overlap). */
    std::chrono::milliseconds secret_overlap{std::chrono::hours(24)};
};

/** A new subscription, with its generated signing secret (returned once, never stored outside
 *  the secret store) when the caller gave no `signingSecretRef`. */
struct subscribed {
    webhook_subscription subscription;
    std::optional<secret_bytes> signing_secret;
};

/** A rotated subscription with its new secret (returned once). */
struct rotated {
    webhook_subscription subscription;
    secret_bytes signing_secret;
};

/** Manages a tenant's webhook subscriptions.
 *
 *  @par Example
 *  @code
 *  auto s = p->subscriptions().subscribe(ctx, {.project_id = "shop", .event_type = "order.*",
 *                                              .endpoint_url = "https://hooks.example.com/in"}).value();
 *  std::string whsec = s.signing_secret->str();  // give it to the receiver; shown only now
 *  @endcode
 */
class INTEGRATION_EXPORT subscription_service {
public:
    /** `check` is the egress guard's hop check: the endpoint must pass it on subscribe (and the
     *  delivery worker checks again at every send). `on_due`, when set, is called after a
     *  reactivation or a recover made deliveries due (the platform wakes its delivery worker). */
    subscription_service(storage::store& store, credentials::secret_store& secrets, http::hop_check check,
                         clock const& clock, subscription_service_options options = {},
                         std::function<void()> on_due = {});

    /** Subscribes. `endpointUrl` must be https (plain http only where the egress policy allows it)
     *  and pass the egress guard; a malformed `filter` is `errc::invalid_argument` naming its
     *  position. Without a `signingSecretRef` a `whsec_` secret is generated into the secret store. */
    result<subscribed> subscribe(request_context const& ctx, subscription_spec spec);
    result<webhook_subscription> find(request_context const& ctx, std::string const& subscription_id);
    result<storage::page<webhook_subscription>> list(request_context const& ctx, storage::page_request const& page);
    result<webhook_subscription> deactivate(request_context const& ctx, std::string const& subscription_id,
                                            std::string reason = "deactivated by the caller");
    result<webhook_subscription> reactivate(request_context const& ctx, std::string const& subscription_id);
    /** Generates a new secret; the replaced one keeps signing for `secret_overlap`, as does each
     *  one an earlier rotation replaced until its own overlap ends. `errc::conflict` while
     *  `max_replaced_signing_secrets` still sign. Generated secrets whose overlap ended leave
     *  the secret store. */
    result<rotated> rotate_secret(request_context const& ctx, std::string const& subscription_id);
    /** Replays every Failed or DeadLettered delivery of the subscription created at or after
     *  `since` (same `webhook-id`) whose payload is still kept; returns their ids. Each page of 500 commits on its own, so a
     *  long outage does not hold the store's writer: after an error, the pages before it stay
     *  replayed and recovering again replays the rest. */
    result<std::vector<std::string>> recover(request_context const& ctx, std::string const& subscription_id,
                                             time_point since);

private:
    storage::store& store_;
    credentials::secret_store& secrets_;
    http::hop_check check_;
    clock const& clock_;
    subscription_service_options options_;
    std::function<void()> on_due_;
};

}  // namespace integration::webhooks

#endif
