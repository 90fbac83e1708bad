#include <integration/backends/curl/curl_transport.hpp>
#include <integration/outbound/egress_guard.hpp>

#include "support/keep_alive_server.hpp"

#include <gtest/gtest.h>

namespace integration::net {
namespace {

using namespace std::chrono_literals;

ip_address addr(char const* text) {
    return *ip_address::parse(text);
}

std::string answer_with_target(testing::received_request const& r) {
    return testing::http_answer_bytes(200, r.target);
}

// 127.0.0.1 is allowed; the rest of 127/8 stands for the networks the policy refuses, so a
// listener there proves that nothing was sent.
class egress_guard_test : public ::testing::Test {
protected:
    std::string url(std::string const& host, std::uint16_t port, std::string const& path = "/x") const {
        return "http://" + host + ":" + std::to_string(port) + path;
    }

    testing::keep_alive_server allowed_{answer_with_target};
    testing::keep_alive_server inside_{answer_with_target, "127.0.0.2"};
    static_resolver dns_;
    std::unique_ptr<http::transport> curl_ = http::make_curl_transport();
    egress_guard guard_{*curl_, egress_policy{.allow = {cidr::parse("127.0.0.1/32").value()}}, dns_};
};

TEST_F(egress_guard_test, a_refused_destination_is_never_connected_to_and_a_resolved_address_never_named) {
    dns_.add("inside.test", {addr("127.0.0.2")});
    dns_.add("mixed.test", {addr("127.0.0.1"), addr("127.0.0.2")});
    for (auto const& target :
         {url("inside.test", inside_.port()), url("INSIDE.test.", inside_.port()), url("mixed.test", inside_.port()),
          url("127.0.0.2", inside_.port()), url("2130706434", inside_.port()), url("127.2", inside_.port())}) {
        auto res = guard_.send({.method = "POST", .url = target, .body = "secret-body", .timeout = 2s});
        ASSERT_FALSE(res) << target;
        EXPECT_EQ(res.error(), errc::egress_denied) << res.error().detail();
        EXPECT_EQ(guard_.check(target).error(), errc::egress_denied);
        if (target.find(".test") != std::string::npos) {
            EXPECT_EQ(res.error().detail().find("127.0.0.2"), std::string::npos) << res.error().detail();
            EXPECT_NE(res.error().detail().find("egress policy"), std::string::npos) << res.error().detail();
        }
    }
    EXPECT_EQ(guard_.send({.url = "https://unknown.test/"}).error(), errc::unavailable);
    EXPECT_EQ(inside_.accepted(), 0);
}

TEST_F(egress_guard_test, an_allowed_name_is_pinned_to_its_checked_address_in_every_spelling) {
    dns_.add("vendor.test", {addr("127.0.0.1")});
    for (std::string host : {"vendor.test", "vendor.test.", "VENDOR.TEST", "Vendor.Test."}) {
        auto pin = guard_.check(url(host, allowed_.port()));
        ASSERT_TRUE(pin) << pin.error().message();
        EXPECT_EQ(pin->host, "vendor.test");
        EXPECT_EQ(pin->address, "127.0.0.1");
        // The request's own pin is replaced by the checked one.
        auto res = guard_.send({.url = url(host, allowed_.port(), "/ping"),
                                .timeout = 5s,
                                .pin = http::pinned_address{"vendor.test", inside_.port(), "127.0.0.2"}});
        ASSERT_TRUE(res) << host << ": " << res.error().message();
        EXPECT_EQ(res->body, "/ping");
    }
    auto seen = allowed_.requests();
    ASSERT_EQ(seen.size(), 4u);
    EXPECT_EQ(seen[2].header("Host"), "VENDOR.TEST:" + std::to_string(allowed_.port()));  // the URL's name, as written
    EXPECT_EQ(inside_.accepted(), 0);
}

TEST_F(egress_guard_test, every_redirect_hop_is_checked_and_pinned_again) {
    dns_.add("inside.test", {addr("127.0.0.2")});
    dns_.add("next.test", {addr("127.0.0.1")});
    testing::keep_alive_server first([&](testing::received_request const& r) {
        auto to = r.target == "/to-inside" ? url("inside.test", inside_.port())
                                           : url("next.test", allowed_.port(), "/landed");
        return testing::http_answer_bytes(302, "", "Location: " + to + "\r\n");
    });
    egress_guard following(*curl_, egress_policy{.allow = {cidr::parse("127.0.0.1/32").value()}}, dns_,
                           {.max_hops = 3});
    auto landed = following.send({.url = url("127.0.0.1", first.port(), "/to-next"), .timeout = 5s});
    ASSERT_TRUE(landed) << landed.error().message();
    EXPECT_EQ(landed->body, "/landed");
    auto refused = following.send({.url = url("127.0.0.1", first.port(), "/to-inside"), .timeout = 5s});
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error(), errc::egress_denied);
    EXPECT_EQ(inside_.accepted(), 0);
    // Without hops allowed, the 302 itself is the answer.
    auto not_followed = guard_.send({.url = url("127.0.0.1", first.port(), "/to-next"), .timeout = 5s});
    ASSERT_TRUE(not_followed);
    EXPECT_EQ(not_followed->status, 302);
}

}  // namespace
}  // namespace integration::net
