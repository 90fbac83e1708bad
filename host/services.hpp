#ifndef INTEGRATION_HOST_SERVICES_HPP
#define INTEGRATION_HOST_SERVICES_HPP

// The library wired on the embedded default: everything under one data directory.

#include "config.hpp"
#include "metrics.hpp"

#include <integration/ports/blob_store.hpp>
#include <integration/services/api_key_service.hpp>
#include <integration/services/connection_service.hpp>
#include <integration/services/failure_service.hpp>
#include <integration/services/idempotency_keys.hpp>
#include <integration/services/health_prober.hpp>
#include <integration/services/credential_service.hpp>
#include <integration/backends/local_vault/local_secret_store.hpp>
#include <integration/ports/event_publisher.hpp>
#include <integration/outbound/egress_policy.hpp>
#include <integration/services/registry.hpp>
#include <integration/services/run_service.hpp>
#include <integration/ports/store.hpp>

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

struct services {
    serve_config config;
    std::unique_ptr<storage::store> store;
    std::unique_ptr<keys::api_key_service> keys;
    std::unique_ptr<runs::idempotency_keys> idempotency;
    std::unique_ptr<failures::failure_service> failures;
    std::unique_ptr<credentials::local_secret_store> secrets;
    std::optional<credentials::fingerprinter> fingerprints;
    std::unique_ptr<blobs::blob_store> blobs;
    std::unique_ptr<http::transport> transport;
    host_resolver resolver;
    net::egress_policy egress;
    std::unique_ptr<providers::registry> registry;
    std::unique_ptr<connections::connection_service> connections;
    std::unique_ptr<credentials::credential_service> credentials;
    std::unique_ptr<connections::health_prober> prober;
    std::unique_ptr<runs::run_service> runs;
    // Where the outbox relay publishes; in-process subscribers (webhook fan-out later) attach here.
    events::in_process_dispatcher events;
    host_metrics metrics;
};

/** Creates DIR if needed and opens its store (also for `keys create`). A `host.db` left by an
 *  older host is imported into the store once and renamed `host.db.imported`. */
result<std::unique_ptr<storage::store>> open_store(std::string const& data_dir);

/** Opens every store under `config.data` and builds the services. */
result<std::unique_ptr<services>> open_services(serve_config config);

}  // namespace integration::host

#endif
