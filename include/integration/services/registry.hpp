#ifndef INTEGRATION_SERVICES_REGISTRY_HPP
#define INTEGRATION_SERVICES_REGISTRY_HPP

/** @file
 *  The Vendor Registry: the domain service that keeps the provider/client invariants that span
 *  two aggregates, each operation inside one store transaction.
 */

#include <integration/ports/clock.hpp>
#include <integration/outbound/egress_policy.hpp>
#include <integration/domain/api_client.hpp>
#include <integration/domain/provider.hpp>
#include <integration/ports/store.hpp>
#include <integration/export.hpp>

namespace integration::providers {

/** Registers, activates and deprecates providers and their API clients. Destinations the egress
 *  policy refuses whatever they resolve to (a denied literal address, a denied scheme, userinfo,
 *  `localhost`, plain http to a name) are refused at registration, so no connection is created
 *  only to sit Pending; names are resolved and checked again at call time.
 *
 *  @par Example
 *  @code
 *  registry reg(store, clock, net::egress_policy{});  // the host passes its --egress-allow policy
 *  auto p = reg.register_provider(ctx, {.key = "acme", ...}).value();
 *  auto c = reg.register_client(ctx, p.id(), {.assembly_name = "Acme.ApiClient", .version = "1.0.0"}).value();
 *  reg.activate_client(ctx, c.id()).value();
 *  reg.activate_provider(ctx, p.id()).value();
 *  @endcode
 */
class INTEGRATION_EXPORT registry {
public:
    registry(storage::store& store, clock const& clock, net::egress_policy egress)
        : store_(store), clock_(clock), egress_(std::move(egress)) {}

    /** Registers a provider; its key must be unique in its scope, and its `baseUrl` and
     *  `environments[].baseUrl` must pass `egress_policy::check_url` (`errc::egress_denied`). */
    result<integration_provider> register_provider(request_context const& ctx, provider_spec spec);
    /** Registers a client of a provider (whose `baseUrl` must still pass the egress policy).
     *  assemblyName + version must be unique among global clients and within the caller's view
     *  (global clients and the tenant's own); other tenants' clients never conflict. */
    result<external_api_client> register_client(request_context const& ctx, std::string const& provider_id,
                                                api_client_spec spec);
    /** Registered → Active for a client of a non-deprecated provider. */
    result<external_api_client> activate_client(request_context const& ctx, std::string const& api_client_id);
    /** Activates a provider and, in the same commit, its Registered clients; refused, changing
     *  nothing, for a Deprecated provider or one that would have no Active client. On an Active
     *  provider, activates the clients registered since. */
    result<integration_provider> activate_provider(request_context const& ctx, std::string const& provider_id);
    /** Deprecates a client; deprecating the provider's last Active client deprecates the provider too. */
    result<external_api_client> deprecate_client(request_context const& ctx, std::string const& api_client_id);
    /** Deprecates a provider; it accepts no new connections or clients. */
    result<integration_provider> deprecate_provider(request_context const& ctx, std::string const& provider_id,
                                                    std::string reason);

private:
    storage::store& store_;
    clock const& clock_;
    net::egress_policy egress_;
};

}  // namespace integration::providers

#endif
