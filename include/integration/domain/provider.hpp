#ifndef INTEGRATION_DOMAIN_PROVIDER_HPP
#define INTEGRATION_DOMAIN_PROVIDER_HPP

/** @file
 *  IntegrationProvider: the Vendor Registry catalogue entry for an external system.
 */

#include <integration/core/aggregate.hpp>
#include <integration/domain/policies.hpp>
#include <integration/export.hpp>

#include <optional>
#include <string>
#include <vector>

namespace integration::providers {

/** The kind of external system. */
enum class provider_category { source_control, model, cloud, communication, commerce, business_system };
/** Registered → Active → Deprecated (Registered → Deprecated too). */
enum class provider_status { registered, active, deprecated };
/** Tenant-owned or global (shared read-only with every tenant). */
enum class provider_scope { tenant, global };

}  // namespace integration::providers

namespace integration {
template <>
struct enum_names<providers::provider_category> {
    static constexpr std::array<std::string_view, 6> values{"SourceControl", "Model",    "Cloud",
                                                            "Communication", "Commerce", "BusinessSystem"};
};
template <>
struct enum_names<providers::provider_status> {
    static constexpr std::array<std::string_view, 3> values{"Registered", "Active", "Deprecated"};
};
template <>
struct enum_names<providers::provider_scope> {
    static constexpr std::array<std::string_view, 2> values{"tenant", "global"};
};
}  // namespace integration

namespace integration::providers {

/** ProviderEnvironment: a named set of endpoints, e.g. sandbox vs production. */
struct INTEGRATION_EXPORT provider_environment {
    std::string name;      ///< "sandbox", "production", ...
    std::string base_url;

    static auto json_fields() {
        return std::make_tuple(field("name", &provider_environment::name),
                               field("baseUrl", &provider_environment::base_url));
    }
};

/** How to probe a connection's health: one request expected to answer `expect_status`. */
struct INTEGRATION_EXPORT health_check {
    std::string method = "GET";
    std::string path = "/";
    std::int64_t expect_status = 200;

    static auto json_fields() {
        return std::make_tuple(field("method", &health_check::method), field("path", &health_check::path),
                               defaulted_field("expectStatus", &health_check::expect_status));
    }
};

/** What a caller supplies to register a provider. */
struct INTEGRATION_EXPORT provider_spec {
    std::string key;  ///< Unique in its scope: `[a-z0-9][a-z0-9._-]*`, at most 64 characters.
    std::string display_name;
    provider_category category = provider_category::business_system;
    auth_mode auth_model = auth_mode::api_key;
    std::string base_url;                    ///< `https://` (or `http://`, checked again at call time).
    std::vector<std::string> capabilities;   ///< ProviderCapability names such as "sms.send".
    std::vector<provider_environment> environments;
    std::optional<integration::rate_limit_profile> rate_limit_profile;
    std::optional<providers::health_check> health_check;
    provider_scope scope = provider_scope::tenant;

    static auto json_fields() {
        return std::make_tuple(field("key", &provider_spec::key), field("displayName", &provider_spec::display_name),
                               field("category", &provider_spec::category),
                               field("authModel", &provider_spec::auth_model),
                               field("baseUrl", &provider_spec::base_url),
                               defaulted_field("capabilities", &provider_spec::capabilities),
                               defaulted_field("environments", &provider_spec::environments),
                               field("rateLimitProfile", &provider_spec::rate_limit_profile),
                               field("healthCheck", &provider_spec::health_check),
                               defaulted_field("scope", &provider_spec::scope));
    }
};

/** The stored state of a provider. */
struct INTEGRATION_EXPORT provider_data : provider_spec {
    std::string provider_id;
    provider_status status = provider_status::registered;

    static auto json_fields() {
        return std::tuple_cat(std::make_tuple(field("providerId", &provider_data::provider_id)),
                              provider_spec::json_fields(), std::make_tuple(field("status", &provider_data::status)));
    }
};

/** IntegrationProvider aggregate root.
 *
 *  @par Example
 *  @code
 *  auto p = integration_provider::register_new(ctx, clock.now(),
 *      {.key = "twilio", .display_name = "Twilio", .category = provider_category::communication,
 *       .base_url = "https://api.twilio.com", .capabilities = {"sms.send"}});
 *  @endcode
 */
class INTEGRATION_EXPORT integration_provider : public aggregate {
public:
    using data_type = provider_data;

    /** Validates `spec` and creates a Registered provider (raises IntegrationProviderRegistered).
     *  A global provider needs an admin context. */
    static result<integration_provider> register_new(request_context const& ctx, time_point now, provider_spec spec);
    /** Rebuilds a stored provider (stores only). */
    static result<integration_provider> restore(metadata m, provider_data d);

    std::string const& id() const noexcept { return d_.provider_id; }
    provider_data const& data() const noexcept { return d_; }
    provider_status status() const noexcept { return d_.status; }
    bool is_global() const noexcept { return d_.scope == provider_scope::global; }
    /** True when the provider declares `capability`. */
    bool supports(std::string_view capability) const noexcept;

    /** Registered → Active; needs at least one Active ExternalApiClient (`active_clients`). */
    result<void> activate(std::size_t active_clients);
    /** → Deprecated (raises IntegrationProviderDeprecated); already Deprecated is an error. */
    result<void> deprecate(std::string reason);
    /** Fails unless the provider is Active: a Deprecated or merely Registered provider takes no new connections. */
    result<void> ensure_accepts_connections() const;

private:
    integration_provider(metadata m, provider_data d) : aggregate(std::move(m)), d_(std::move(d)) {}
    provider_data d_;
};

/** Checks a provider spec; the error names the first bad field. */
INTEGRATION_EXPORT result<void> validate(provider_spec const& spec);

}  // namespace integration::providers

#endif
