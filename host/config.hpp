#ifndef INTEGRATION_HOST_CONFIG_HPP
#define INTEGRATION_HOST_CONFIG_HPP

// The host's settings: command-line flags, INTEGRATION_* environment variables and a `key = value`
// file, in that order of precedence, over the defaults below.

#include <integration/core/durability.hpp>
#include <integration/core/error.hpp>

#include <chrono>
#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace integration::host {

struct serve_config {
    std::string data = "./data";
    std::string listen = "127.0.0.1:8080";
    std::vector<std::string> egress_allow;  // CIDRs
    std::vector<std::string> managed_identity_tenants;  // may use this machine's managed identity
    std::vector<std::string> managed_identity_allow;    // CIDRs only managed-identity token requests reach
    std::string hosts_file;                 // `ADDRESS NAME...` lines answered before the system resolver
    std::string public_url;                 // empty: http://<listen>
    std::chrono::milliseconds read_timeout{30'000};   // one deadline for a request's header and body
    std::chrono::milliseconds header_timeout{10'000};  // and a shorter one for its header alone
    std::chrono::milliseconds idle_timeout{60'000};   // keep-alive wait for the next request
    std::size_t body_limit = 1024 * 1024;     // routes that carry vendor bodies (POST /integrations/runs)
    std::size_t json_body_limit = 64 * 1024;  // every other route
    std::size_t inbound_body_limit = 1024 * 1024;  // POST /webhooks/inbound/{connectionId} (what vendors send)
    std::size_t header_limit = 16 * 1024;
    std::size_t max_connections = 1024;
    std::size_t max_connections_per_address = 256;  // per client IPv4 address or IPv6 /64
    std::size_t io_threads = 2;
    std::size_t workers = 16;        // threads that run blocking library calls that touch only the stores
    // Threads for the synchronous part of the requests that call vendors (a run holds one until
    // its vendor call starts; connection probes and rotation checks for their whole call), and how
    // many of those requests one tenant may have in progress, answered or not (over it: 429
    // tenant-busy). A tenant holds at most half the threads with calls that block on the vendor.
    std::size_t execution_threads = 16;
    std::size_t tenant_executions = 16;
    // Runs: no attempt starts later than run_deadline after the first (a longer wait answers 202
    // and the retry worker continues the run); each vendor call's timeout; how long a request waits
    // for a twin with its Idempotency-Key; and the margin of the lease after which a run a stopped
    // host left Running is failed (run_service::run_lease).
    std::chrono::milliseconds run_deadline{5'000};
    std::chrono::milliseconds attempt_timeout{10'000};
    std::chrono::milliseconds idempotency_wait{5'000};
    std::chrono::milliseconds orphan_margin{30'000};
    // Redirects a run follows (each hop passes the egress check again); 0 answers the 3xx as is.
    std::size_t max_redirects = 0;
    // Outbound webhook deliveries sent at once by the delivery worker (a hanging endpoint holds one).
    std::size_t webhook_in_flight = 256;
    // Of those, one tenant's at most (0: half): its endpoints that hang leave the rest to the others.
    std::size_t webhook_tenant_in_flight = 0;
    // Background workers: how often each sweeps (host/workers.cpp).
    std::chrono::milliseconds outbox_interval{1'000};
    std::chrono::milliseconds retry_interval{5'000};
    std::chrono::milliseconds rotation_interval{60'000};
    std::chrono::milliseconds probe_interval{60'000};
    std::chrono::milliseconds retention_interval{3'600'000};
    // Requests per second per API key (token bucket; 0 turns it off) and the burst above it.
    std::size_t key_rate_limit = 100;
    std::size_t key_burst = 200;
    /** How runs are recorded: `immediate` (on disk before the answer) or `deferred` (committed
     *  before the answer, on disk within 10 ms; a killed process loses nothing, a power loss may). */
    durability recording = durability::immediate;
    std::size_t run_retention_days = 180;   // finished runs and resolved failures, then archived
    std::size_t body_retention_days = 30;   // request and response bodies
    // After the last answer is written, how long a worker's sweep in progress may take to finish.
    std::chrono::milliseconds shutdown_timeout{20'000};
};

struct keys_create_config {
    std::string data = "./data";
    std::string tenant;
    bool admin = false;
};

/** Flags as parsed: `--name value`, `--name=value`, or a bare boolean `--name`; repeatable. */
using flag_map = std::map<std::string, std::vector<std::string>>;

/** Parses `args`; `booleans` are the flags that take no value. Unknown flags are refused later. */
result<flag_map> parse_flags(std::vector<std::string> const& args, std::vector<std::string> const& booleans);

/** Resolves `serve` settings: flag > env > config file (`--config` / INTEGRATION_CONFIG) > default. */
result<serve_config> load_serve_config(flag_map const& flags);

result<keys_create_config> load_keys_create_config(flag_map const& flags);

/** `--public-url` without a trailing slash, or `http://<listen>`. */
std::string public_base_url(serve_config const& c);

/** `--help` text of every command. */
std::string usage();

}  // namespace integration::host

#endif
