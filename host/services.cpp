#include "services.hpp"

#include <integration/backends/filesystem/filesystem_blob_store.hpp>
#include <integration/backends/curl/curl_transport.hpp>
#include <integration/ports/clock.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>

#include <sys/stat.h>

#include <cerrno>
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace integration::host {
namespace fs = std::filesystem;

result<void> host_resolver::load(std::string const& path) {
    std::ifstream in(path);
    if (!in) return error{errc::invalid_argument, "--hosts-file " + path + " cannot be read"};
    std::map<std::string, std::vector<net::ip_address>> entries;
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
        std::istringstream fields(line.substr(0, line.find('#')));
        std::string address_text, name;
        if (!(fields >> address_text)) continue;
        auto address = net::ip_address::parse(address_text);
        auto where = "--hosts-file " + path + ":" + std::to_string(n) + ": ";
        if (!address)
            return error{errc::invalid_argument, where + "'" + address_text + "' is not an IPv4 or IPv6 address"};
        bool named = false;
        while (fields >> name) {
            // Stored the way the egress check asks for a name: lower case, no trailing dot.
            std::transform(name.begin(), name.end(), name.begin(),
                           [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
            if (name.ends_with('.')) name.pop_back();
            if (name.empty()) return error{errc::invalid_argument, where + "an empty name"};
            entries[name].push_back(*address);
            named = true;
        }
        if (!named) return error{errc::invalid_argument, where + "expected `ADDRESS NAME...`"};
    }
    for (auto& [name, addresses] : entries) {
        names_.push_back(name);
        file_.add(name, std::move(addresses));
    }
    return {};
}

bool host_resolver::listed(std::string const& host) const {
    return std::find(names_.begin(), names_.end(), host) != names_.end();
}

result<std::vector<net::ip_address>> host_resolver::resolve(std::string const& host) {
    return listed(host) ? file_.resolve(host) : system_.resolve(host);
}

namespace {

// Secrets and key files live in the data directory. A new one is made private to the service
// account; an existing one is never chmod'ed (pointed at a shared directory such as /tmp, that
// would break every other user of it), but refused when others could swap the files in it.
result<void> prepare_data_dir(std::string const& data_dir) {
    std::error_code ec;
    auto dir = fs::path(data_dir);
    if (!dir.has_filename()) dir = dir.parent_path();  // `data/`
    if (!fs::exists(dir, ec)) {
        if (dir.has_parent_path()) fs::create_directories(dir.parent_path(), ec);
        if (!ec && ::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
            ec = std::error_code(errno, std::generic_category());
        if (ec)
            return error{errc::storage_failure, "cannot create the data directory " + data_dir + ": " + ec.message()};
    }
    auto st = fs::status(dir, ec);
    if (ec || !fs::is_directory(st))
        return error{errc::invalid_argument, "the data directory " + data_dir + " is not a directory"};
    if ((st.permissions() & (fs::perms::group_write | fs::perms::others_write)) != fs::perms::none)
        return error{errc::invalid_argument, "the data directory " + data_dir +
                                                 " is writable by group or others; use a directory only the service "
                                                 "account can write (chmod go-w, or a new path: it is created 0700)"};
    return {};
}

}  // namespace

result<std::unique_ptr<storage::store>> open_store(std::string const& data_dir) {
    if (auto r = prepare_data_dir(data_dir); !r) return r.error();
    auto dir = fs::path(data_dir);
    auto path = (dir / "integration.db").string();
    auto store = storage::open_sqlite_store({.path = path, .source = "integration-host"});
    if (!store) return store.error();
    // API keys, Idempotency-Key records and inbound webhook registrations were the host's own
    // host.db before they moved behind the store port.
    std::error_code ec;
    if (auto legacy = dir / "host.db"; fs::exists(legacy, ec)) {
        if (auto r = storage::import_host_database(path, legacy.string()); !r) return r.error();
        fs::rename(legacy, dir / "host.db.imported", ec);
        if (ec) return error{errc::storage_failure, "imported " + legacy.string() + " but cannot rename it: " + ec.message()};
    }
    return store;
}

result<std::unique_ptr<services>> open_services(serve_config config) {
    auto s = std::make_unique<services>();
    auto dir = fs::path(config.data);
    auto store = open_store(config.data);
    if (!store) return store.error();
    s->store = std::move(*store);
    s->keys = std::make_unique<keys::api_key_service>(*s->store);
    s->idempotency = std::make_unique<runs::idempotency_keys>(*s->store);
    s->failures = std::make_unique<failures::failure_service>(*s->store, system_clock::instance());
    auto secrets = credentials::open_local_secret_store(
        {.path = (dir / "secrets.db").string(), .key_file = (dir / "master.key").string()});
    if (!secrets) return secrets.error();
    s->secrets = std::move(*secrets);
    auto fp = credentials::fingerprinter::load_or_create((dir / "fingerprint.key").string());
    if (!fp) return fp.error();
    s->fingerprints.emplace(std::move(*fp));
    auto blobs = blobs::open_filesystem_blob_store((dir / "blobs").string());
    if (!blobs) return blobs.error();
    s->blobs = std::move(*blobs);
    s->transport = http::make_curl_transport();

    if (!config.hosts_file.empty())
        if (auto loaded = s->resolver.load(config.hosts_file); !loaded) return loaded.error();
    for (auto const& text : config.egress_allow) {
        auto c = net::cidr::parse(text);
        if (!c) return error{errc::invalid_argument, "--egress-allow " + text + ": " + c.error().detail()};
        s->egress.allow.push_back(*c);
    }
    // The host must not call itself, unless the operator allowed its address on purpose.
    auto host_part = config.listen.substr(0, config.listen.rfind(':'));
    if (host_part.size() > 2 && host_part.front() == '[') host_part = host_part.substr(1, host_part.size() - 2);
    if (auto own = net::ip_address::parse(host_part)) {
        bool allowed = false;
        for (auto const& c : s->egress.allow) allowed = allowed || c.contains(*own);
        if (!allowed) s->egress.own_addresses.push_back(*own);
    }

    auto& clock = system_clock::instance();
    s->registry = std::make_unique<providers::registry>(*s->store, clock, s->egress);
    s->connections = std::make_unique<connections::connection_service>(*s->store, clock, s->egress);
    s->credentials = std::make_unique<credentials::credential_service>(*s->store, *s->secrets, *s->fingerprints, clock,
                                                                       *s->transport, s->egress, s->resolver);
    // A periodic sweep probes the connections not checked within one probe interval.
    auto probe_every = std::chrono::duration_cast<std::chrono::seconds>(config.probe_interval);
    s->prober = std::make_unique<connections::health_prober>(*s->store, *s->credentials, *s->transport, s->egress,
                                                             s->resolver, clock,
                                                             connections::health_prober_options{.interval = probe_every});
    // A run ends Completed or Failed within the request unless its next attempt would start past
    // --run-deadline-ms: then it stays Running (202) and the retry worker continues it, so no
    // request sleeps through a vendor's long Retry-After or a slow rate limit.
    runs::run_service_options run_options{.retry = {.total_deadline = config.run_deadline},
                                          .attempt_timeout = config.attempt_timeout,
                                          .recording = config.recording,
                                          .idempotency_wait = config.idempotency_wait,
                                          .orphan_margin = config.orphan_margin};
    run_options.redirects.max_hops = static_cast<unsigned>(config.max_redirects);
    s->runs = std::make_unique<runs::run_service>(*s->store, *s->credentials, *s->blobs, *s->transport, s->egress,
                                                  s->resolver, clock, std::move(run_options));
    s->events.subscribe("*", [m = &s->metrics](events::event_envelope const& e) -> result<void> {
        m->count_event(e.event_type);
        return {};
    });
    s->config = std::move(config);
    return s;
}

}  // namespace integration::host
