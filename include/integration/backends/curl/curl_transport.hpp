#ifndef INTEGRATION_BACKENDS_CURL_CURL_TRANSPORT_HPP
#define INTEGRATION_BACKENDS_CURL_CURL_TRANSPORT_HPP

/** @file
 *  The libcurl backend of the HTTP transport port (component `curl`).
 */

#include <integration/export.hpp>
#include <integration/ports/transport.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

namespace integration::http {

/** Options of the libcurl transport. */
struct curl_options {
    std::chrono::milliseconds connect_timeout{10'000};
    std::size_t max_response_bytes = 16 * 1024 * 1024;  ///< Larger bodies fail the call.
    bool verify_tls = true;
    /** PEM file of the certificate authorities to trust instead of the system store; empty: the
     *  system store. */
    std::string ca_file;
    /** An `http://host:port` forward proxy for every call. Empty (the default): connect directly,
     *  and the `http_proxy`, `https_proxy` and `all_proxy` environment variables are ignored.
     *
     *  With a proxy, a call with a `request::pin` is tunnelled through it (CONNECT) to the
     *  pinned address, `http` and `https` alike: the proxy is handed the checked address, never
     *  a name to resolve again (so a proxy that filters by host name sees only addresses). A call
     *  without a pin goes to the proxy as usual (absolute-form for `http`, CONNECT to the name for
     *  `https`) and the proxy resolves the name itself, so it must apply the egress policy at its
     *  connect time (as Smokescreen does); use a proxy only when it is that enforcement point.
     *  Hosts in `no_proxy` are connected to directly, at the pinned address. */
    std::string proxy;
    /** Comma-separated hosts, domains and CIDRs reached directly despite `proxy` (curl's
     *  `NO_PROXY` syntax, e.g. `"localhost,.internal,10.0.0.0/8"`); empty: none. */
    std::string no_proxy;
    /** Connections `transport::start` keeps open for reuse, busy and idle together, over every
     *  host (libcurl's `CURLMOPT_MAXCONNECTS`). Left to itself libcurl keeps four per call in
     *  flight and closes one idle connection at each call's end beyond that, so a load that dips
     *  and rises again reconnects to its vendors; a fixed size keeps them. 0: libcurl's rule. */
    std::size_t connection_cache = 256;
};

/** A libcurl transport (TLS verification on, no redirects followed, no proxy unless configured).
 *  Its easy handles are pooled, each keeping its keep-alive connections; TLS sessions are shared
 *  between them, so a new connection to a host resumes a session instead of a full handshake.
 *  A handle whose call failed (cut at the size cap, cancelled, timed out) is not pooled again, so
 *  no connection with an answer left half-read is ever reused.
 *  Every header must pass `check_header_field`, else the call fails with `errc::invalid_argument`
 *  before anything is sent. A transfer that fails certificate verification is an
 *  `errc::unavailable` error whose detail names the certificate problem; a cancelled call is
 *  `errc::cancelled`. */
INTEGRATION_EXPORT std::unique_ptr<transport> make_curl_transport(curl_options options = {});

}  // namespace integration::http

#endif
