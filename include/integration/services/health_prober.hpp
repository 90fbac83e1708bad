#ifndef INTEGRATION_SERVICES_HEALTH_PROBER_HPP
#define INTEGRATION_SERVICES_HEALTH_PROBER_HPP

/** @file
 *  Health probes: the initial test that lets a Pending connection become Active (a resolvable
 *  credential and a passing probe), and periodic probes that move health between Healthy,
 *  Degraded and Unhealthy, raising IntegrationFailed when a probe fails. A connection that was
 *  working and fails a probe has one open IntegrationFailure (source HealthProbe) until a probe
 *  passes again and resolves it.
 */

#include <integration/domain/connection.hpp>
#include <integration/services/credential_service.hpp>
#include <integration/outbound/pipeline.hpp>
#include <integration/export.hpp>

#include <atomic>

namespace integration::connections {

/** Options of the prober. */
struct health_prober_options {
    std::chrono::milliseconds timeout{5'000};     ///< Deadline of one probe request.
    std::chrono::seconds interval{300};           ///< Periodic probes skip connections checked more recently.
    int unhealthy_after = 3;                      ///< Consecutive failed probes before Unhealthy (Degraded before).
};

/** Probes connections with their provider's `healthCheck` through an outbound pipeline (trace
 *  context, egress guard, authentication): the destination is checked before the credential is
 *  resolved, so a refused one fetches no token. */
class INTEGRATION_EXPORT health_prober {
public:
    health_prober(storage::store& store, credentials::credential_service& credentials, http::transport& transport,
                  net::egress_policy egress, net::resolver& resolver, clock const& clock,
                  health_prober_options options = {});

    /** Probes one connection now and records the result; a Pending connection whose credential
     *  resolves and whose probe passes becomes Active. */
    result<integration_connection> test(request_context const& ctx, std::string const& connection_id);
    /** Probes every Active or Degraded connection of every tenant not checked within `interval`,
     *  one after another, and returns how many were probed; once `stop` is set it probes no
     *  further connection (each probe may take `timeout`), the rest waiting for the next sweep. */
    result<std::size_t> sweep(std::atomic<bool> const& stop);

    /** What credential rotation verifies new material with: the health check of a connection
     *  (not Retired) that uses `credential_id`, sent with that material through the same egress
     *  guard. A credential no connection uses has nothing to be verified against and passes. */
    credentials::verifier verifier_for(request_context const& ctx, std::string const& credential_id);

private:
    result<health_probe_result> probe(request_context const& ctx, integration_connection const& c, bool& credential_ok);
    /** Records a failed probe of `c` as its open IntegrationFailure (a new one, or an attempt of
     *  the open one), or resolves that failure when the probe passed. `working`: `c` was Active or
     *  Degraded before the probe. */
    result<void> record_failure(storage::unit_of_work& uow, integration_connection const& c,
                                health_probe_result const& outcome, bool working, time_point now);

    storage::store& store_;
    http::pipeline outbound_;
    clock const& clock_;
    health_prober_options options_;
    std::mutex failures_mutex_;
    std::map<std::string, int> consecutive_failures_;
};

}  // namespace integration::connections

#endif
