#ifndef INTEGRATION_DOMAIN_API_CLIENT_HPP
#define INTEGRATION_DOMAIN_API_CLIENT_HPP

/** @file
 *  ExternalApiClient: a versioned, catalogued client binding for a provider, with the operations
 *  it maps to HTTP calls.
 */

#include <integration/domain/provider.hpp>
#include <integration/domain/semantic_version.hpp>
#include <integration/export.hpp>

namespace integration::providers {

/** Registered → Active → Deprecated (Registered → Deprecated too). */
enum class client_status { registered, active, deprecated };

}  // namespace integration::providers

template <>
struct integration::enum_names<integration::providers::client_status> {
    static constexpr std::array<std::string_view, 3> values{"Registered", "Active", "Deprecated"};
};

namespace integration::providers {

/** ClientOperation: an operation name bound to an HTTP method and a path template (`{name}` placeholders). */
struct INTEGRATION_EXPORT client_operation {
    std::string operation;  ///< e.g. "sms.send"; must be one of the client's capabilities.
    std::string method;     ///< GET, POST, PUT, PATCH or DELETE.
    std::string path;       ///< Starts with `/`.
    /** The class of operations it belongs to (e.g. "upload"): a connection's ConnectionEndpoint of
     *  that class gives its base URL. None is the `default` class. */
    std::optional<std::string> operation_class;
    /** The request header by which the vendor recognises a repeated request (e.g.
     *  `Idempotency-Key`). Every run of the operation sends it: the caller's value from
     *  `input.headers`, else the run's id, the same at every attempt. So a POST or PATCH is retried
     *  after a timeout, a lost connection or a 5xx, which without it escalate instead (the vendor
     *  may have acted on the request). */
    std::optional<std::string> idempotency_header;

    static auto json_fields() {
        return std::make_tuple(field("operation", &client_operation::operation),
                               field("method", &client_operation::method), field("path", &client_operation::path),
                               field("operationClass", &client_operation::operation_class),
                               field("idempotencyHeader", &client_operation::idempotency_header));
    }
};

/** ClientVersion: one entry of the semver history. */
struct INTEGRATION_EXPORT client_version {
    std::string version;
    time_point registered_at{};

    static auto json_fields() {
        return std::make_tuple(field("version", &client_version::version),
                               field("registeredAt", &client_version::registered_at));
    }
};

/** What a caller supplies to register a client. */
struct INTEGRATION_EXPORT api_client_spec {
    std::string assembly_name;  ///< e.g. "Acme.Sms.ApiClient"; with `version`, unique in a tenant's view.
    std::string version;        ///< SemVer.
    std::vector<std::string> capabilities;
    integration::auth_mode auth_mode = integration::auth_mode::api_key;
    std::optional<integration::rate_limit_profile> rate_limit_profile;
    std::vector<client_operation> operations;

    static auto json_fields() {
        return std::make_tuple(field("assemblyName", &api_client_spec::assembly_name),
                               field("version", &api_client_spec::version),
                               defaulted_field("capabilities", &api_client_spec::capabilities),
                               field("authMode", &api_client_spec::auth_mode),
                               field("rateLimitProfile", &api_client_spec::rate_limit_profile),
                               defaulted_field("operations", &api_client_spec::operations));
    }
};

/** The stored state of a client. */
struct INTEGRATION_EXPORT api_client_data : api_client_spec {
    std::string api_client_id;
    std::string provider_id;
    client_status status = client_status::registered;
    std::vector<client_version> versions;

    static auto json_fields() {
        return std::tuple_cat(std::make_tuple(field("apiClientId", &api_client_data::api_client_id),
                                              field("providerId", &api_client_data::provider_id)),
                              api_client_spec::json_fields(),
                              std::make_tuple(field("status", &api_client_data::status),
                                              field("versions", &api_client_data::versions)));
    }
};

/** ExternalApiClient aggregate root. */
class INTEGRATION_EXPORT external_api_client : public aggregate {
public:
    using data_type = api_client_data;

    /** Creates a Registered client of `provider` (raises ExternalApiClientRegistered). Fails when
     *  the provider is Deprecated or lacks a declared capability, or an operation is not a declared
     *  capability. The client takes the provider's scope. */
    static result<external_api_client> register_new(request_context const& ctx, time_point now,
                                                    integration_provider const& provider, api_client_spec spec);
    /** Rebuilds a stored client (stores only). */
    static result<external_api_client> restore(metadata m, api_client_data d);

    std::string const& id() const noexcept { return d_.api_client_id; }
    api_client_data const& data() const noexcept { return d_; }
    client_status status() const noexcept { return d_.status; }
    /** The operation binding named `operation`, or null. */
    client_operation const* find_operation(std::string_view operation) const noexcept;

    /** Registered → Active. */
    result<void> activate();
    /** → Deprecated (raises ExternalApiClientDeprecated). */
    result<void> deprecate();
    /** Moves to a newer version, kept in the history; must be greater than the current one. */
    result<void> publish_version(std::string const& version, time_point now);

private:
    external_api_client(metadata m, api_client_data d) : aggregate(std::move(m)), d_(std::move(d)) {}
    api_client_data d_;
};

}  // namespace integration::providers

#endif
