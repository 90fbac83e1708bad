#ifndef INTEGRATION_PROVIDERS_REGISTRY_HPP
#define INTEGRATION_PROVIDERS_REGISTRY_HPP

/** @file
 *  The Vendor Registry: the domain service that keeps the provider/client invariants that span
 *  two aggregates, each operation inside one store transaction.
 */

#include <integration/core/clock.hpp>
#include <integration/providers/api_client.hpp>
#include <integration/providers/provider.hpp>
#include <integration/storage/store.hpp>

namespace integration::providers {

/** Registers, activates and deprecates providers and their API clients.
 *
 *  @par Example
 *  @code
 *  registry reg(store, clock);
 *  auto p = reg.register_provider(ctx, {.key = "acme", ...}).value();
 *  auto c = reg.register_client(ctx, p.id(), {.assembly_name = "Acme.ApiClient", .version = "1.0.0"}).value();
 *  reg.activate_client(ctx, c.id()).value();
 *  reg.activate_provider(ctx, p.id()).value();
 *  @endcode
 */
class registry {
public:
    registry(storage::store& store, clock const& clock) : store_(store), clock_(clock) {}

    /** Registers a provider; its key must be unique in its scope. */
    result<integration_provider> register_provider(request_context const& ctx, provider_spec spec);
    /** Registers a client of a provider; assemblyName + version must be globally unique. */
    result<external_api_client> register_client(request_context const& ctx, std::string const& provider_id,
                                                api_client_spec spec);
    /** Registered → Active for a client of a non-deprecated provider. */
    result<external_api_client> activate_client(request_context const& ctx, std::string const& api_client_id);
    /** Activates a provider that has at least one Active client. */
    result<integration_provider> activate_provider(request_context const& ctx, std::string const& provider_id);
    /** Deprecates a client; deprecating the provider's last Active client deprecates the provider too. */
    result<external_api_client> deprecate_client(request_context const& ctx, std::string const& api_client_id);
    /** Deprecates a provider; it accepts no new connections or clients. */
    result<integration_provider> deprecate_provider(request_context const& ctx, std::string const& provider_id,
                                                    std::string reason);

private:
    storage::store& store_;
    clock const& clock_;
};

}  // namespace integration::providers

#endif
