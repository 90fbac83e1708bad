#ifndef INTEGRATION_HOST_SERVICES_HPP
#define INTEGRATION_HOST_SERVICES_HPP

// The library opened on the embedded default (everything under one data directory), as the
// platform the handlers use.

#include "config.hpp"
#include "metrics.hpp"

#include <integration/backends/local_vault/local_secret_store.hpp>
#include <integration/platform.hpp>
#include <integration/services/api_key_service.hpp>
#include <integration/services/failure_service.hpp>

#include <memory>

namespace integration::host {

/** The names of `--hosts-file` from a static resolver, every other name from the system's. */
class host_resolver final : public net::resolver {
public:
    /** Reads `ADDRESS NAME...` lines (`#` starts a comment); an error names the file and line. */
    result<void> load(std::string const& path);
    result<std::vector<net::ip_address>> resolve(std::string const& host) override;

private:
    bool listed(std::string const& host) const;

    net::static_resolver file_;
    std::vector<std::string> names_;
    net::system_resolver system_;
};

/** The host's view of the platform: the names the handlers use point into `platform`, which
 *  owns every backend, service and worker. The host adds only what is HTTP (keys, metrics). */
struct services {
    serve_config config;
    std::unique_ptr<keys::api_key_service> keys;
    host_resolver resolver;   // handed to the platform; outlives it
    net::egress_policy egress;  // the platform's egress policy, as configured
    host_metrics metrics;     // outlives the platform, whose relay and workers report into it
    std::unique_ptr<integration::platform> platform;

    // Into `platform`; null until `open_services` (the `routes` command builds handlers without).
    storage::store* store = nullptr;
    credentials::local_secret_store* secrets = nullptr;
    blobs::blob_store* blobs = nullptr;
    http::transport* transport = nullptr;
    providers::registry* registry = nullptr;
    connections::connection_service* connections = nullptr;
    credentials::credential_service* credentials = nullptr;
    connections::health_prober* prober = nullptr;
    runs::run_service* runs = nullptr;
    failures::failure_service* failures = nullptr;
    webhooks::subscription_service* subscriptions = nullptr;
    webhooks::publisher* publisher = nullptr;
    webhooks::inbound_gateway* inbound = nullptr;
};

/** Creates DIR if needed and opens its store (also for `keys create`). A `host.db` left by an
 *  older host is imported into the store once and renamed `host.db.imported`. */
result<std::unique_ptr<storage::store>> open_store(std::string const& data_dir);

/** Opens the platform on `config.data` and the host's own tables; the workers start with
 *  `platform->start()`. */
result<std::unique_ptr<services>> open_services(serve_config config);

}  // namespace integration::host

#endif
