#include <integration/backends/curl/curl_transport.hpp>
#include <integration/outbound/egress_policy.hpp>

#include "support/loopback_server.hpp"

#include <integration/ports/transport.hpp>

#include <gtest/gtest.h>

namespace integration::net {
namespace {

ip_address addr(char const* text) { return *ip_address::parse(text); }

TEST(egress_connect, every_resolved_answer_is_checked_not_just_the_first) {
    static_resolver dns;
    dns.add("rebind.example.com", {addr("93.184.216.34"), addr("127.0.0.1")});
    dns.add("metadata.example.com", {addr("169.254.169.254")});
    dns.add("v6.example.com", {addr("2606:4700::1111"), addr("::ffff:10.0.0.1")});
    dns.add("good.example.com", {addr("93.184.216.34"), addr("2606:4700::1111")});
    egress_policy policy;
    EXPECT_EQ(policy.check_destination("https://rebind.example.com/x", dns).error(), errc::egress_denied);
    EXPECT_EQ(policy.check_destination("https://metadata.example.com/", dns).error(), errc::egress_denied);
    EXPECT_EQ(policy.check_destination("https://v6.example.com/", dns).error(), errc::egress_denied);
    auto ok = policy.check_destination("https://good.example.com:8443/x", dns);
    ASSERT_TRUE(ok) << ok.error().message();
    EXPECT_EQ(ok->port, 8443);
    EXPECT_EQ(ok->literal->to_string(), "93.184.216.34");  // pinned to the first checked answer
    EXPECT_EQ(policy.check_destination("https://unknown.example.com/", dns).error(), errc::unavailable);
}

TEST(egress_connect, http_to_a_name_needs_every_address_on_the_allow_list) {
    static_resolver dns;
    dns.add("dev.internal", {addr("10.1.2.3")});
    dns.add("public.example.com", {addr("93.184.216.34")});
    egress_policy policy{.allow = {cidr::parse("10.0.0.0/8").value()}};
    EXPECT_TRUE(policy.check_destination("http://dev.internal:8080/", dns));
    EXPECT_EQ(policy.check_destination("http://public.example.com/", dns).error(), errc::egress_denied);
    EXPECT_EQ(policy.check_url("http://dev.internal:8080/").error(), errc::egress_denied);  // unknown without DNS
}

TEST(egress_connect, the_connection_goes_to_the_pinned_address_not_a_new_lookup) {
    testing::loopback_server server;
    static_resolver dns;
    // No DNS server is reachable here: only the pin can take the request to the server.
    dns.add("api.vendor.test", {addr("127.0.0.1")});
    egress_policy policy{.allow = {cidr::parse("127.0.0.0/8").value()}};
    auto url = "http://api.vendor.test:" + std::to_string(server.port()) + "/v1/ping";
    auto d = policy.check_destination(url, dns);
    ASSERT_TRUE(d) << d.error().message();
    auto transport = http::make_curl_transport();
    auto res = transport->send({.method = "GET", .url = url, .pin = http::pinned_address{d->host, d->port, d->literal->to_string()}});
    ASSERT_TRUE(res) << res.error().message();
    EXPECT_EQ(res->status, 200);
    EXPECT_EQ(res->body, "ok");
    auto seen = server.requests();
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_NE(seen[0].find("Host: api.vendor.test:" + std::to_string(server.port())), std::string::npos);
    // Without the allow-list the same destination is refused before any connection.
    EXPECT_EQ(egress_policy{}.check_destination(url, dns).error(), errc::egress_denied);
}

// The check canonicalises the name (lower case, no trailing dot); the connection must still go to
// the address it checked whatever spelling the URL uses, never to a fresh lookup of that spelling.
TEST(egress_connect, every_spelling_of_a_checked_name_connects_to_the_checked_address) {
    testing::loopback_server server;
    static_resolver dns;
    dns.add("vendor.test", {addr("127.0.0.1")});  // only the static resolver knows this name
    egress_policy policy{.allow = {cidr::parse("127.0.0.0/8").value()}};
    auto transport = http::make_curl_transport();
    for (std::string host : {"vendor.test", "vendor.test.", "VENDOR.TEST", "Vendor.Test."}) {
        auto url = "http://" + host + ":" + std::to_string(server.port()) + "/v1/ping";
        auto d = policy.check_destination(url, dns);
        ASSERT_TRUE(d) << host << ": " << d.error().message();
        EXPECT_EQ(d->host, "vendor.test");
        auto res = transport->send({.url = url, .timeout = std::chrono::seconds(5),
                                    .pin = http::pinned_address{d->host, d->port, d->literal->to_string()}});
        ASSERT_TRUE(res) << host << ": " << res.error().message();
        EXPECT_EQ(res->body, "ok");
    }
    EXPECT_EQ(server.requests().size(), 4u);
}

TEST(egress_connect, a_name_with_a_denied_answer_is_refused_in_every_spelling_without_revealing_the_answer) {
    static_resolver dns;
    dns.add("vendor.test", {addr("10.20.30.40")});
    egress_policy policy;
    for (std::string host : {"vendor.test", "vendor.test.", "VENDOR.TEST", "Vendor.Test.", "vendor%2Etest"}) {
        auto d = policy.check_destination("https://" + host + "/", dns);
        ASSERT_FALSE(d) << host;
        EXPECT_EQ(d.error(), errc::egress_denied) << host << ": " << d.error().detail();
        EXPECT_EQ(d.error().detail().find("10.20.30.40"), std::string::npos) << d.error().detail();
    }
}

}  // namespace
}  // namespace integration::net
