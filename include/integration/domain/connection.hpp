#ifndef INTEGRATION_DOMAIN_CONNECTION_HPP
#define INTEGRATION_DOMAIN_CONNECTION_HPP

/** @file
 *  IntegrationConnection: a configured, testable link between a tenant's project and a provider.
 */

#include <integration/core/aggregate.hpp>
#include <integration/domain/policies.hpp>
#include <integration/domain/failure.hpp>
#include <integration/domain/provider.hpp>
#include <integration/export.hpp>

#include <boost/json/object.hpp>

#include <optional>
#include <string>
#include <vector>

namespace integration::connections {

/** Pending → Active ⇄ Degraded; any → Retired (terminal). */
enum class connection_status { pending, active, degraded, retired };

}  // namespace integration::connections

template <>
struct integration::enum_names<integration::connections::connection_status> {
    static constexpr std::array<std::string_view, 4> values{"Pending", "Active", "Degraded", "Retired"};
};

namespace integration::connections {

/** ConnectionEndpoint: the resolved base URL (and region) for one class of operations. */
struct INTEGRATION_EXPORT connection_endpoint {
    std::string operation_class;  ///< e.g. "default", "upload".
    std::string base_url;
    std::optional<std::string> region;

    static auto json_fields() {
        return std::make_tuple(field("operationClass", &connection_endpoint::operation_class),
                               field("baseUrl", &connection_endpoint::base_url),
                               field("region", &connection_endpoint::region));
    }
};

/** The outcome of one health probe. */
struct health_probe_result {
    health_status status = health_status::unknown;
    std::string detail;  ///< What the probe saw; never secret material.
    failures::failure_category category = failures::failure_category::transient;  ///< For IntegrationFailed.
};

/** What a caller supplies to create a connection. */
struct INTEGRATION_EXPORT connection_spec {
    std::string project_id;
    std::string display_name;
    std::optional<std::string> credential_id;
    boost::json::object configuration;      ///< Provider-specific settings.
    std::vector<connection_endpoint> endpoints;
    /** ConnectionScope: the capabilities (operations such as "sms.send") its runs may use. None
     *  listed grants every capability of the provider. */
    std::vector<std::string> scopes;
    std::optional<integration::rate_limit_budget> rate_limit_budget;  ///< Replaces the provider's and client's profile.
    std::optional<integration::retry_policy> retry_policy;            ///< Replaces the run service's retry options.
    /** The ProviderEnvironment (by name, e.g. "sandbox") whose base URL its calls use; none uses the
     *  provider's `baseUrl`. */
    std::optional<std::string> environment;

    static auto json_fields() {
        return std::make_tuple(field("projectId", &connection_spec::project_id),
                               field("displayName", &connection_spec::display_name),
                               field("credentialId", &connection_spec::credential_id),
                               defaulted_field("configuration", &connection_spec::configuration),
                               defaulted_field("endpoints", &connection_spec::endpoints),
                               defaulted_field("scopes", &connection_spec::scopes),
                               field("rateLimitBudget", &connection_spec::rate_limit_budget),
                               field("retryPolicy", &connection_spec::retry_policy),
                               field("environment", &connection_spec::environment));
    }
};

/** The stored state of a connection. */
struct INTEGRATION_EXPORT connection_data : connection_spec {
    std::string connection_id;
    std::string provider_id;
    integration::auth_mode auth_mode = integration::auth_mode::none;
    connection_status status = connection_status::pending;
    health_status health = health_status::unknown;
    std::optional<std::string> health_reason;  ///< What the latest probe saw (why a connection is still Pending).
    std::optional<time_point> last_checked_at;
    std::optional<time_point> established_at;

    static auto json_fields() {
        return std::tuple_cat(
            std::make_tuple(field("connectionId", &connection_data::connection_id),
                            field("providerId", &connection_data::provider_id),
                            field("authMode", &connection_data::auth_mode)),
            connection_spec::json_fields(),
            std::make_tuple(field("status", &connection_data::status), field("health", &connection_data::health),
                            field("healthReason", &connection_data::health_reason),
                            field("lastCheckedAt", &connection_data::last_checked_at),
                            field("establishedAt", &connection_data::established_at)));
    }
};

/** IntegrationConnection aggregate root. */
class INTEGRATION_EXPORT integration_connection : public aggregate {
public:
    using data_type = connection_data;

    /** Creates a Pending connection to `provider`, which must be Active. */
    static result<integration_connection> create(request_context const& ctx, time_point now,
                                                 providers::integration_provider const& provider,
                                                 connection_spec spec);
    /** Rebuilds a stored connection (stores only). */
    static result<integration_connection> restore(metadata m, connection_data d);

    std::string const& id() const noexcept { return d_.connection_id; }
    connection_data const& data() const noexcept { return d_; }
    connection_status status() const noexcept { return d_.status; }

    /** Records a probe and its detail (`healthReason`). A failed probe raises IntegrationFailed
     *  and moves Active to Degraded; a passing one moves Degraded back to Active. Retired
     *  connections are not probed. */
    result<void> record_health(health_probe_result const& probe, time_point now);
    /** Pending → Active (raises IntegrationConnectionEstablished). Needs a credentialId that
     *  resolved (`credential_resolvable`) and a passing latest probe. */
    result<void> activate(bool credential_resolvable, time_point now);
    /** Binds a credential (not while Retired). */
    result<void> attach_credential(std::string credential_id);
    /** → Retired (raises IntegrationConnectionRetired); terminal. */
    result<void> retire(std::string reason);
    /** The base URL of calls of `operation_class`, without a trailing slash: the connection's
     *  endpoint of that class, else its `default` endpoint, else the base URL of its chosen
     *  environment of `provider`, else `provider.base_url`. */
    std::string base_url(providers::provider_data const& provider, std::string_view operation_class = "default") const;
    /** Fails (`errc::scope_not_granted`, naming the capability) unless `capability` is among the
     *  granted scopes, or no scope is listed. */
    result<void> ensure_scope_granted(std::string_view capability) const;
    /** Fails unless runs may execute now: Active and Healthy, or Degraded (but not Unhealthy) when
     *  `allow_degraded`. */
    result<void> ensure_can_execute(bool allow_degraded) const;
    /** Whether `ensure_can_execute` fails only for the connection's health (it is Active or
     *  Degraded): a probe that passes makes runs executable again. */
    bool waits_for_health(bool allow_degraded) const;

private:
    integration_connection(metadata m, connection_data d) : aggregate(std::move(m)), d_(std::move(d)) {}
    connection_data d_;
};

}  // namespace integration::connections

#endif
