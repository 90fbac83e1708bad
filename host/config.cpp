#include "config.hpp"

#include <integration/core/context.hpp>

#include <boost/url/parse.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <set>

namespace integration::host {
namespace {

std::string trim(std::string s) {
    auto const ws = " \t\r\n";
    s.erase(0, s.find_first_not_of(ws));
    auto end = s.find_last_not_of(ws);
    s.erase(end == std::string::npos ? 0 : end + 1);
    return s;
}

std::vector<std::string> split_commas(std::string const& s) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= s.size()) {
        auto comma = s.find(',', start);
        auto part = trim(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
        if (!part.empty()) out.push_back(part);
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return out;
}

std::string env_name(std::string const& flag) {
    std::string n = "INTEGRATION_";
    for (char c : flag) n += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return n;
}

// A key the host does not know is refused, with its line: a misspelt setting silently ignored
// would leave its default in force.
result<flag_map> read_config_file(std::string const& path, std::set<std::string> const& known) {
    std::ifstream in(path);
    if (!in) return error{errc::invalid_argument, "config file " + path + " cannot be read"};
    flag_map out;
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
        ++n;
        line = trim(line);
        if (line.empty() || line[0] == '#') continue;
        auto eq = line.find('=');
        if (eq == std::string::npos)
            return error{errc::invalid_argument, path + ":" + std::to_string(n) + ": expected `key = value`"};
        auto key = trim(line.substr(0, eq));
        auto value = trim(line.substr(eq + 1));
        if (!known.contains(key) || key == "config")
            return error{errc::invalid_argument, path + ":" + std::to_string(n) + ": unknown key '" + key +
                                                     "' (keys are the serve flags without --, see --help)"};
        if (key == "egress-allow" || key == "managed-identity-tenant" || key == "managed-identity-allow")
            for (auto& v : split_commas(value)) out[key].push_back(v);
        else
            out[key] = {value};
    }
    return out;
}

// One setting's values from the first layer that has it.
class layers {
public:
    layers(flag_map const& flags, flag_map file) : flags_(flags), file_(std::move(file)) {}

    std::vector<std::string> values(std::string const& name, bool list) const {
        if (auto it = flags_.find(name); it != flags_.end()) return it->second;
        if (char const* e = std::getenv(env_name(name).c_str()); e && *e)
            return list ? split_commas(e) : std::vector<std::string>{e};
        if (auto it = file_.find(name); it != file_.end()) return it->second;
        return {};
    }

private:
    flag_map const& flags_;
    flag_map file_;
};

// Only --key-rate-limit (off) and --max-redirects (none followed) take 0; every other number
// must be positive. Durations and thread counts have a ceiling: past it a wait overflows (a
// worker then spins) or the threads cannot be made.
result<std::size_t> to_size(std::string const& name, std::string const& v) {
    bool zero_ok = name == "key-rate-limit" || name == "max-redirects";
    std::size_t most = std::numeric_limits<std::size_t>::max();
    std::string unit;
    if (name.ends_with("-ms")) most = 604'800'000, unit = " (7 days)";
    else if (name.ends_with("-days")) most = 36'525, unit = " (100 years)";
    else if (name == "io-threads" || name == "workers" || name == "execution-threads") most = 1'024;
    else if (name == "max-redirects") most = 20;
    // Beast takes the header limit as 32 bits, and a body is held in memory; a rate or burst past
    // 2^63 would turn negative in the token bucket (every request refused).
    else if (name == "header-limit") most = 1 << 20, unit = " (1 MiB)";
    else if (name.ends_with("body-limit")) most = std::size_t{1} << 30, unit = " (1 GiB)";
    else if (name == "key-rate-limit" || name == "key-burst" || name.starts_with("max-connections")) most = 1'000'000;
    // Digits only: stoull reads "-1" as the largest number and skips leading spaces.
    bool digits = !v.empty() && std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
    try {
        auto n = digits ? std::stoull(v) : 0;
        if (digits && (n > 0 || zero_ok) && n <= most) return static_cast<std::size_t>(n);
    } catch (...) {
    }
    auto range = most == std::numeric_limits<std::size_t>::max() ? std::string() : " of at most " + std::to_string(most) + unit;
    return error{errc::invalid_argument, "--" + name + (zero_ok ? " must be a whole number (0 turns it off)" : " must be a positive integer") +
                                             range + ", got '" + v + "'"};
}

result<void> refuse_unknown(flag_map const& flags, std::set<std::string> const& known) {
    for (auto const& [k, v] : flags)
        if (!known.contains(k)) return error{errc::invalid_argument, "unknown flag --" + k + " (see --help)"};
    return {};
}

}  // namespace

result<flag_map> parse_flags(std::vector<std::string> const& args, std::vector<std::string> const& booleans) {
    flag_map out;
    for (std::size_t i = 0; i < args.size(); ++i) {
        auto const& a = args[i];
        if (a.rfind("--", 0) != 0) return error{errc::invalid_argument, "unexpected argument '" + a + "'"};
        auto name = a.substr(2);
        if (auto eq = name.find('='); eq != std::string::npos) {
            out[name.substr(0, eq)].push_back(name.substr(eq + 1));
        } else if (std::find(booleans.begin(), booleans.end(), name) != booleans.end()) {
            out[name].push_back("true");
        } else {
            if (i + 1 >= args.size()) return error{errc::invalid_argument, "--" + name + " needs a value"};
            out[name].push_back(args[++i]);
        }
    }
    return out;
}

result<serve_config> load_serve_config(flag_map const& flags) {
    static std::set<std::string> const known{
        "data", "listen", "egress-allow", "hosts-file", "public-url", "config", "read-timeout-ms", "header-timeout-ms",
        "idle-timeout-ms", "body-limit", "json-body-limit", "inbound-body-limit", "header-limit", "max-connections",
        "max-connections-per-address", "io-threads", "workers",
        "outbox-interval-ms", "retry-interval-ms", "rotation-interval-ms", "probe-interval-ms", "shutdown-timeout-ms",
        "retention-interval-ms", "run-retention-days", "body-retention-days", "key-rate-limit", "key-burst", "recording",
        "execution-threads", "tenant-executions", "run-deadline-ms", "attempt-timeout-ms", "idempotency-wait-ms",
        "orphan-margin-ms", "max-redirects", "webhook-in-flight", "webhook-tenant-in-flight", "managed-identity-tenant",
        "managed-identity-allow"};
    if (auto r = refuse_unknown(flags, known); !r) return r.error();
    flag_map file;
    layers no_file(flags, {});
    if (auto path = no_file.values("config", false); !path.empty()) {
        auto f = read_config_file(path.back(), known);
        if (!f) return f.error();
        file = std::move(*f);
    }
    layers l(flags, std::move(file));
    serve_config c;
    auto one = [&](std::string const& name, std::string& out) {
        if (auto v = l.values(name, false); !v.empty()) out = v.back();
    };
    one("data", c.data);
    one("listen", c.listen);
    one("public-url", c.public_url);
    one("hosts-file", c.hosts_file);
    c.egress_allow = l.values("egress-allow", true);
    c.managed_identity_allow = l.values("managed-identity-allow", true);
    for (auto const& v : l.values("managed-identity-tenant", true))
        for (auto& tenant : split_commas(v)) {
            if (auto ok = validate_tenant_id(tenant); !ok)
                return error{errc::invalid_argument, "--managed-identity-tenant " + tenant + ": " + ok.error().detail()};
            c.managed_identity_tenants.push_back(std::move(tenant));
        }
    if (auto v = l.values("recording", false); !v.empty()) {
        if (v.back() == "immediate") c.recording = durability::immediate;
        else if (v.back() == "deferred") c.recording = durability::deferred;
        else return error{errc::invalid_argument, "--recording must be immediate or deferred, got '" + v.back() + "'"};
    }
    struct numeric {
        char const* name;
        std::size_t* out;
    };
    std::size_t read_ms = static_cast<std::size_t>(c.read_timeout.count());
    std::size_t header_ms = static_cast<std::size_t>(c.header_timeout.count());
    std::size_t idle_ms = static_cast<std::size_t>(c.idle_timeout.count());
    auto ms = [](std::chrono::milliseconds d) { return static_cast<std::size_t>(d.count()); };
    std::size_t outbox_ms = ms(c.outbox_interval), retry_ms = ms(c.retry_interval), rotation_ms = ms(c.rotation_interval),
                probe_ms = ms(c.probe_interval), shutdown_ms = ms(c.shutdown_timeout),
                retention_ms = ms(c.retention_interval), run_deadline_ms = ms(c.run_deadline),
                attempt_timeout_ms = ms(c.attempt_timeout), idempotency_wait_ms = ms(c.idempotency_wait),
                orphan_margin_ms = ms(c.orphan_margin);
    for (auto [name, out] : {numeric{"read-timeout-ms", &read_ms}, numeric{"header-timeout-ms", &header_ms},
                             numeric{"idle-timeout-ms", &idle_ms},
                             numeric{"body-limit", &c.body_limit}, numeric{"json-body-limit", &c.json_body_limit},
                             numeric{"inbound-body-limit", &c.inbound_body_limit},
                             numeric{"header-limit", &c.header_limit},
                             numeric{"max-connections", &c.max_connections},
                             numeric{"max-connections-per-address", &c.max_connections_per_address},
                             numeric{"io-threads", &c.io_threads}, numeric{"workers", &c.workers},
                             numeric{"outbox-interval-ms", &outbox_ms}, numeric{"retry-interval-ms", &retry_ms},
                             numeric{"rotation-interval-ms", &rotation_ms}, numeric{"probe-interval-ms", &probe_ms},
                             numeric{"shutdown-timeout-ms", &shutdown_ms}, numeric{"retention-interval-ms", &retention_ms},
                             numeric{"run-retention-days", &c.run_retention_days},
                             numeric{"body-retention-days", &c.body_retention_days},
                             numeric{"key-rate-limit", &c.key_rate_limit}, numeric{"key-burst", &c.key_burst},
                             numeric{"execution-threads", &c.execution_threads},
                             numeric{"tenant-executions", &c.tenant_executions},
                             numeric{"run-deadline-ms", &run_deadline_ms}, numeric{"attempt-timeout-ms", &attempt_timeout_ms},
                             numeric{"idempotency-wait-ms", &idempotency_wait_ms},
                             numeric{"orphan-margin-ms", &orphan_margin_ms},
                             numeric{"max-redirects", &c.max_redirects},
                             numeric{"webhook-in-flight", &c.webhook_in_flight},
                             numeric{"webhook-tenant-in-flight", &c.webhook_tenant_in_flight}}) {
        if (auto v = l.values(name, false); !v.empty()) {
            auto n = to_size(name, v.back());
            if (!n) return n.error();
            *out = *n;
        }
    }
    c.read_timeout = std::chrono::milliseconds(read_ms);
    c.header_timeout = std::chrono::milliseconds(header_ms);
    c.idle_timeout = std::chrono::milliseconds(idle_ms);
    c.outbox_interval = std::chrono::milliseconds(outbox_ms);
    c.retry_interval = std::chrono::milliseconds(retry_ms);
    c.rotation_interval = std::chrono::milliseconds(rotation_ms);
    c.probe_interval = std::chrono::milliseconds(probe_ms);
    c.shutdown_timeout = std::chrono::milliseconds(shutdown_ms);
    c.retention_interval = std::chrono::milliseconds(retention_ms);
    c.run_deadline = std::chrono::milliseconds(run_deadline_ms);
    c.attempt_timeout = std::chrono::milliseconds(attempt_timeout_ms);
    c.idempotency_wait = std::chrono::milliseconds(idempotency_wait_ms);
    c.orphan_margin = std::chrono::milliseconds(orphan_margin_ms);
    if (c.probe_interval < std::chrono::seconds(1))
        return error{errc::invalid_argument, "--probe-interval-ms must be at least 1000: connections are probed at most once a second"};
    if (c.inbound_body_limit == 0)
        return error{errc::invalid_argument, "--inbound-body-limit must be at least 1 byte (vendors' webhook bodies)"};
    if (c.webhook_in_flight == 0)
        return error{errc::invalid_argument, "--webhook-in-flight must be at least 1 (deliveries sent at once)"};
    if (c.webhook_tenant_in_flight > c.webhook_in_flight)
        return error{errc::invalid_argument,
                     "--webhook-tenant-in-flight must be at most --webhook-in-flight (one tenant's share of its slots)"};
    if (c.tenant_executions == 0)
        return error{errc::invalid_argument, "--tenant-executions must be at least 1 (vendor-calling requests of one tenant in progress)"};
    if (c.execution_threads == 0)
        return error{errc::invalid_argument, "--execution-threads must be at least 1"};
    // Vendors are handed URLs made from it (inboundUrl), and Twilio's signature covers the URL
    // it called: anything but an absolute http(s) origin and path would fail every delivery.
    if (!c.public_url.empty()) {
        auto u = boost::urls::parse_absolute_uri(c.public_url);
        if (!u || (u->scheme() != "https" && u->scheme() != "http") || u->host().empty() || u->has_userinfo() ||
            u->has_query() || u->has_fragment())
            return error{errc::invalid_argument, "--public-url must be an absolute http(s) URL without user, query or fragment "
                                                 "(e.g. https://hooks.example.com), got '" + c.public_url + "'"};
    }
    return c;
}

result<keys_create_config> load_keys_create_config(flag_map const& flags) {
    if (auto r = refuse_unknown(flags, {"data", "tenant", "admin"}); !r) return r.error();
    layers l(flags, {});
    keys_create_config c;
    if (auto v = l.values("data", false); !v.empty()) c.data = v.back();
    if (auto v = l.values("tenant", false); !v.empty()) c.tenant = v.back();
    // A bare --admin, or INTEGRATION_ADMIN=true|1|false|0 like the other flags' variables.
    if (auto v = l.values("admin", false); !v.empty()) {
        if (v.back() == "true" || v.back() == "1") c.admin = true;
        else if (v.back() == "false" || v.back() == "0") c.admin = false;
        else return error{errc::invalid_argument, "--admin (INTEGRATION_ADMIN) must be true, false, 1 or 0, got '" + v.back() + "'"};
    }
    if (c.tenant.empty()) return error{errc::invalid_argument, "--tenant is required"};
    return c;
}

std::string public_base_url(serve_config const& c) {
    auto base = c.public_url.empty() ? "http://" + c.listen : c.public_url;
    while (!base.empty() && base.back() == '/') base.pop_back();
    return base;
}

std::string usage() {
    return R"(usage:
  integration-host serve [--data DIR] [--listen HOST:PORT] [--egress-allow CIDR]... [--hosts-file FILE] [--public-url URL]
                         [--config FILE] [--read-timeout-ms N] [--header-timeout-ms N] [--idle-timeout-ms N]
                         [--body-limit BYTES] [--json-body-limit BYTES] [--inbound-body-limit BYTES] [--header-limit BYTES]
                         [--max-connections N] [--max-connections-per-address N]
                         [--io-threads N] [--workers N] [--outbox-interval-ms N] [--retry-interval-ms N]
                         [--rotation-interval-ms N] [--probe-interval-ms N] [--shutdown-timeout-ms N]
                         [--retention-interval-ms N] [--run-retention-days N] [--body-retention-days N]
                         [--key-rate-limit N] [--key-burst N] [--recording immediate|deferred]
                         [--execution-threads N] [--tenant-executions N] [--run-deadline-ms N]
                         [--attempt-timeout-ms N] [--idempotency-wait-ms N] [--orphan-margin-ms N]
                         [--max-redirects N] [--webhook-in-flight N] [--webhook-tenant-in-flight N]
                         [--managed-identity-tenant T]... [--managed-identity-allow CIDR]...
  integration-host keys create [--data DIR] --tenant T [--admin]

Every serve flag may also come from INTEGRATION_<FLAG> (e.g. INTEGRATION_LISTEN; INTEGRATION_EGRESS_ALLOW
and INTEGRATION_MANAGED_IDENTITY_TENANT are comma-separated) or from a config file of `flag = value` lines; a flag wins over the environment,
which wins over the file. Defaults: --data ./data, --listen 127.0.0.1:8080. --hosts-file FILE answers the
names it lists (`ADDRESS NAME...` lines, like /etc/hosts) before the system resolver; every answer still
passes the egress policy. --managed-identity-tenant T lets tenant T create and use ManagedIdentity
credentials (tokens of this machine's identity); no tenant may by default. --managed-identity-allow CIDR
(169.254.169.254/32 for the usual metadata endpoint) is reachable by managed-identity token requests only. `keys create` reads
INTEGRATION_DATA, INTEGRATION_TENANT and INTEGRATION_ADMIN (true|false) the same way.
)";
}

}  // namespace integration::host
