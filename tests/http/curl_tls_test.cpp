#include <integration/backends/curl/curl_transport.hpp>
#include <integration/ports/transport.hpp>

#include "support/tls_peer.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <set>
#include <optional>
#include <string>

namespace integration::http {
namespace {

using namespace std::chrono_literals;

class curl_tls : public ::testing::Test {
protected:
    void SetUp() override {
        peer_.emplace();  // fails, never skips, without node and openssl
    }
    std::string url(std::string_view host = "127.0.0.1") const {
        return "https://" + std::string(host) + ":" + std::to_string(peer_->port()) + "/";
    }
    pinned_address pin() const { return {"tls.test", peer_->port(), "127.0.0.1"}; }

    std::optional<testing::tls_peer> peer_;
};

bool names_a_self_signed_certificate(std::string const& detail) {
    return detail.find("self-signed certificate") != std::string::npos ||
           detail.find("self signed certificate") != std::string::npos;
}

TEST_F(curl_tls, a_self_signed_certificate_is_refused_with_a_tls_error) {
    auto t = make_curl_transport();
    auto res = t->send({.url = url(), .timeout = 5s});
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::unavailable);
    EXPECT_TRUE(names_a_self_signed_certificate(res.error().detail())) << res.error().detail();
    EXPECT_NE(res.error().detail().find("TLS"), std::string::npos) << res.error().detail();
}

TEST_F(curl_tls, a_pinned_request_is_refused_too) {
    auto t = make_curl_transport();
    auto res = t->send({.url = url("tls.test"), .timeout = 5s, .pin = pin()});
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::unavailable);
    EXPECT_TRUE(names_a_self_signed_certificate(res.error().detail())) << res.error().detail();
}

TEST_F(curl_tls, trusting_the_certificate_through_ca_file_lets_the_same_requests_through) {
    auto t = make_curl_transport({.ca_file = peer_->cert_file()});
    auto direct = t->send({.url = url(), .timeout = 5s});
    ASSERT_TRUE(direct) << direct.error().message();
    EXPECT_EQ(direct->status, 200);
    EXPECT_EQ(direct->body, "secure");
    auto pinned = t->send({.url = url("tls.test"), .timeout = 5s, .pin = pin()});
    ASSERT_TRUE(pinned) << pinned.error().message();
    EXPECT_EQ(pinned->body, "secure");
}

TEST_F(curl_tls, a_trusted_certificate_for_another_name_is_still_refused) {
    // The pin sends wrong.test to the peer, whose certificate covers tls.test and 127.0.0.1 only.
    auto t = make_curl_transport({.ca_file = peer_->cert_file()});
    auto res = t->send(
        {.url = url("wrong.test"), .timeout = 5s, .pin = pinned_address{"wrong.test", peer_->port(), "127.0.0.1"}});
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::unavailable);
    EXPECT_NE(res.error().detail().find("wrong.test"), std::string::npos) << res.error().detail();
}

TEST_F(curl_tls, a_new_connection_resumes_the_tls_session_another_pooled_handle_negotiated) {
    auto t = make_curl_transport({.ca_file = peer_->cert_file()});
    auto first = t->send({.url = url() + "session", .timeout = 5s});
    ASSERT_TRUE(first) << first.error().message();
    EXPECT_EQ(first->body, "full");
    // Two calls at once: one takes the pooled handle and its live connection, the other a new
    // handle that must open a second connection; its handshake resumes the shared session.
    auto call = [&] { return t->send({.url = url() + "session?delay=300", .timeout = 5s}); };
    auto a = std::async(std::launch::async, call);
    auto b = std::async(std::launch::async, call);
    auto ra = a.get();
    auto rb = b.get();
    ASSERT_TRUE(ra) << ra.error().message();
    ASSERT_TRUE(rb) << rb.error().message();
    std::multiset<std::string> answers{ra->body, rb->body};
    EXPECT_EQ(answers, (std::multiset<std::string>{"full", "resumed"}));
}

}  // namespace
}  // namespace integration::http
