#include "services.hpp"

#include "access_log.hpp"
#include "handlers/handlers.hpp"

#include <integration/backends/sqlite/sqlite_store.hpp>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>

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

// API keys, Idempotency-Key records and inbound webhook registrations were the host's own host.db
// before they moved behind the store port: one left by an older host is imported once.
result<void> import_former_host_db(std::string const& data_dir) {
    auto dir = fs::path(data_dir);
    std::error_code ec;
    auto legacy = dir / "host.db";
    if (!fs::exists(legacy, ec)) return {};
    if (auto r = storage::import_host_database((dir / "integration.db").string(), legacy.string()); !r) return r.error();
    fs::rename(legacy, dir / "host.db.imported", ec);
    if (ec) return error{errc::storage_failure, "imported " + legacy.string() + " but cannot rename it: " + ec.message()};
    return {};
}

}  // namespace

result<std::unique_ptr<storage::store>> open_store(std::string const& data_dir) {
    if (auto r = integration::prepare_data_dir(data_dir); !r) return r.error();
    auto store = storage::open_sqlite_store(
        {.path = (fs::path(data_dir) / "integration.db").string(), .source = "integration-host"});
    if (!store) return store.error();
    if (auto r = import_former_host_db(data_dir); !r) return r.error();
    return store;
}

namespace {

// The sockets that reach this host's listener, which its own outbound calls must never reach,
// even where the operator allow-listed their addresses (a loopback vendor beside the host).
// `listen` carries the bound port. A wildcard listener is reached at every local address:
// all of loopback and each interface's (an IPv6 one takes IPv4 too, being dual-stack).
result<std::vector<net::own_endpoint>> own_endpoints(std::string const& listen) {
    auto colon = listen.rfind(':');
    auto host = listen.substr(0, colon);
    if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    auto port = static_cast<std::uint16_t>(std::stoul(listen.substr(colon + 1)));
    auto own = net::ip_address::parse(host);
    if (!own) return error{errc::invalid_argument, "--listen host must be an IP address, got '" + host + "'"};
    std::vector<net::own_endpoint> out;
    auto add = [&](std::string const& block) {
        if (auto c = net::cidr::parse(block)) out.push_back({*c, port});
    };
    bool wildcard = std::all_of(own->bytes.begin(), own->bytes.begin() + (own->v6 ? 16 : 4), [](auto b) { return b == 0; });
    if (!wildcard) {
        add(host);
        return out;
    }
    add("127.0.0.0/8");
    if (own->v6) add("::1");
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) != 0) return error{errc::unavailable, "cannot list this machine's addresses (getifaddrs)"};
    for (auto* i = list; i; i = i->ifa_next) {
        if (!i->ifa_addr) continue;
        char text[INET6_ADDRSTRLEN] = {};
        if (i->ifa_addr->sa_family == AF_INET)
            ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, text, sizeof text);
        else if (i->ifa_addr->sa_family == AF_INET6 && own->v6)
            ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr, text, sizeof text);
        if (text[0] && (own->v6 || i->ifa_addr->sa_family == AF_INET)) add(text);
    }
    ::freeifaddrs(list);
    return out;
}

}  // namespace

result<std::unique_ptr<services>> open_services(serve_config config) {
    auto s = std::make_unique<services>();

    if (!config.hosts_file.empty())
        if (auto loaded = s->resolver.load(config.hosts_file); !loaded) return loaded.error();
    for (auto const& text : config.egress_allow) {
        auto c = net::cidr::parse(text);
        if (!c) return error{errc::invalid_argument, "--egress-allow " + text + ": " + c.error().detail()};
        s->egress.allow.push_back(*c);
    }
    std::vector<net::cidr> identity_endpoints;
    for (auto const& text : config.managed_identity_allow) {
        auto c = net::cidr::parse(text);
        if (!c) return error{errc::invalid_argument, "--managed-identity-allow " + text + ": " + c.error().detail()};
        identity_endpoints.push_back(*c);
    }
    if (auto own = own_endpoints(config.listen); !own) return own.error();
    else s->egress.own_endpoints = std::move(*own);
    // Behind a load balancer the public URL reaches this host at an address it does not listen
    // on: a webhook delivered there would come back in as an inbound one, and fan out again.
    if (!config.public_url.empty())
        if (auto r = s->egress.deny_own_url(config.public_url); !r)
            return error{r.error().code(), "--public-url: " + r.error().detail()};

    // A run ends Completed or Failed within the request unless its next attempt would start past
    // --run-deadline-ms: then it stays Running (202) and the retry worker continues it, so no
    // request sleeps through a vendor's long Retry-After or a slow rate limit.
    auto& c = config;
    auto platform = integration::open_platform({
        .data_dir = c.data,
        .source = "integration-host",
        .resolver = &s->resolver,
        .egress = s->egress,
        .credentials = {.managed_identity_tenants = c.managed_identity_tenants, .managed_identity_allow = identity_endpoints},
        // A periodic sweep probes the connections not checked within one probe interval.
        .probes = {.interval = std::chrono::duration_cast<std::chrono::seconds>(c.probe_interval)},
        .runs = {.retry = {.total_deadline = c.run_deadline},
                 .attempt_timeout = c.attempt_timeout,
                 .recording = c.recording,
                 .redirects = {.max_hops = static_cast<unsigned>(c.max_redirects)},
                 // Runs are answered once recorded, many to a commit (run_service::execute with a handler).
                 .write_behind = true,
                 .idempotency_wait = c.idempotency_wait,
                 .orphan_margin = c.orphan_margin},
        // The host has no vendor-specific code that can mint new secrets, so a due credential
        // raises one IntegrationFailure (rotation_required) for a human.
        // storage.md: runs and failures archived to the blob store after 180 days, bodies purged after 30.
        .retention = {.runs = std::chrono::hours(24 * c.run_retention_days),
                      .failures = std::chrono::hours(24 * c.run_retention_days),
                      .bodies = std::chrono::hours(24 * c.body_retention_days)},
        .workers = {.start = false,
                    .outbox = c.outbox_interval,
                    .retry = c.retry_interval,
                    .rotation = c.rotation_interval,
                    .retention = c.retention_interval},
        .webhooks = {.delivery = {.max_in_flight = c.webhook_in_flight, .max_in_flight_per_tenant = c.webhook_tenant_in_flight},
                     .inbound = {.max_body_bytes = c.inbound_body_limit}},
        .log = &log_event,
    });
    if (!platform) return platform.error();
    auto& p = **platform;
    if (auto r = import_former_host_db(c.data); !r) return r.error();
    s->keys = std::make_unique<keys::api_key_service>(p.store());
    s->failures = &p.failures();
    // The host's data directory holds the local vault: /readyz checks its master key.
    s->secrets = dynamic_cast<credentials::local_secret_store*>(&p.secrets());
    if (!s->secrets) return error{errc::invalid_argument, "the host needs the local secret store"};
    s->store = &p.store();
    s->blobs = &p.blobs();
    s->transport = &p.transport();
    s->registry = &p.registry();
    s->connections = &p.connections();
    s->credentials = &p.credentials();
    s->prober = &p.prober();
    s->runs = &p.runs();
    s->subscriptions = &p.subscriptions();
    s->publisher = &p.publisher();
    s->inbound = &p.inbound();
    // It counts event types: an event's columns are enough.
    p.events().subscribe(
        "*",
        [m = &s->metrics](events::event_envelope const& e) -> result<void> {
            m->count_event(e.event_type);
            return {};
        },
        [](events::event_envelope const&) { return false; });
    for (auto const* w : p.workers()) s->metrics.watch_worker(*w);
    s->metrics.watch_deliveries(p.delivery_worker().stats());
    s->metrics.watch_outbox([&p] { return p.outbox_stats(); });
    s->platform = std::move(*platform);
    s->config = std::move(config);
    return s;
}

}  // namespace integration::host
