#ifndef INTEGRATION_TESTS_SUPPORT_CREDENTIAL_WORLD_HPP
#define INTEGRATION_TESTS_SUPPORT_CREDENTIAL_WORLD_HPP

// What the suites that send authorized calls share: a SQLite store, a local vault and a
// fingerprinter in one temporary folder, a manual clock, a libcurl transport, a static resolver,
// the loopback egress policy, and a credential service over them. A fixture derives from it, so
// these exist before its own members.

#include "storage/fixtures.hpp"

#include <integration/backends/curl/curl_transport.hpp>
#include <integration/outbound/egress_policy.hpp>

#include <integration/services/credential_service.hpp>
#include <integration/backends/local_vault/local_secret_store.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>

namespace integration::testing {

struct credential_world {
    temp_dir dir_;
    manual_clock clock_;
    std::unique_ptr<storage::store> store_ = must(storage::open_sqlite_store({.path = dir_.file("i.db"), .clock = &clock_}));
    std::unique_ptr<credentials::local_secret_store> vault_ = must(credentials::open_local_secret_store(
        {.path = dir_.file("s.db"), .key_file = dir_.file("k"), .key_env = "", .clock = &clock_}));
    credentials::fingerprinter fp_ = must(credentials::fingerprinter::load_or_create(dir_.file("fp")));
    std::unique_ptr<http::transport> transport_ = http::make_curl_transport();
    net::static_resolver dns_;
    /** 127.0.0.1 only: the rest of 127/8 stands for the networks the policy refuses. */
    net::egress_policy loopback_ = {.allow = {net::cidr::parse("127.0.0.1/32").value()}};
    /** Tenant t1 may use the machine's managed identity. */
    credentials::credential_service credentials_{*store_, *vault_, fp_, clock_, *transport_, loopback_, dns_,
                                                 {.managed_identity_tenants = {"t1"}}};
};

}  // namespace integration::testing

#endif
