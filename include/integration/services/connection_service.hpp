#ifndef INTEGRATION_SERVICES_CONNECTION_SERVICE_HPP
#define INTEGRATION_SERVICES_CONNECTION_SERVICE_HPP

/** @file
 *  Creating and retiring connections, with the cross-aggregate rule that a connection needs an
 *  Active provider checked in the same transaction that stores it.
 */

#include <integration/domain/connection.hpp>
#include <integration/ports/clock.hpp>
#include <integration/outbound/egress_policy.hpp>
#include <integration/ports/store.hpp>
#include <integration/export.hpp>

#include <functional>
#include <string>

namespace integration::connections {

/** Connection lifecycle operations over a store. */
class INTEGRATION_EXPORT connection_service {
public:
    /** `retired`, if given, is called with a connection's id once its retirement committed, for
     *  what keeps the connection in memory (a platform drops its bindings and inbound endpoint). */
    connection_service(storage::store& store, clock const& clock, net::egress_policy egress,
                       std::function<void(std::string const&)> retired = {})
        : store_(store), clock_(clock), egress_(std::move(egress)), retired_(std::move(retired)) {}

    /** Creates a Pending connection to `provider_id`, which must be Active and visible to the
     *  tenant; `spec.credential_id` must name a credential of the tenant. The base URL calls will
     *  use (the `default` endpoint's or the provider's) and every endpoint's must pass
     *  `egress_policy::check_url` (`errc::egress_denied`). */
    result<integration_connection> create(request_context const& ctx, std::string const& provider_id,
                                          connection_spec spec);
    /** Records a probe result (and its events) on a connection. */
    result<integration_connection> record_health(request_context const& ctx, std::string const& connection_id,
                                                 health_probe_result const& probe);
    /** Retires a connection; it executes no more runs. */
    result<integration_connection> retire(request_context const& ctx, std::string const& connection_id,
                                          std::string reason);

private:
    storage::store& store_;
    clock const& clock_;
    net::egress_policy egress_;
    std::function<void(std::string const&)> retired_;
};

}  // namespace integration::connections

#endif
