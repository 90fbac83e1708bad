#include <integration/http/transport.hpp>

#include "support/loopback_server.hpp"

#include <gtest/gtest.h>

#include <chrono>

namespace integration::http {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

std::string url_of(testing::loopback_server const& s) { return "http://127.0.0.1:" + std::to_string(s.port()) + "/x"; }

void write_all(int fd, std::string const& s) { (void)::write(fd, s.data(), s.size()); }

TEST(curl_transport, sends_the_request_and_reads_status_headers_and_body) {
    testing::loopback_server server("HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-Request-Id: r-1\r\n\r\nhello");
    auto t = make_curl_transport();
    auto res = t->send({.method = "POST", .url = url_of(server), .headers = {{"X-Api-Key", "k"}}, .body = "{\"a\":1}"});
    ASSERT_TRUE(res) << res.error().message();
    EXPECT_EQ(res->status, 201);
    EXPECT_EQ(res->body, "hello");
    EXPECT_EQ(find_header(res->headers, "x-request-id"), "r-1");
    auto seen = server.requests().at(0);
    EXPECT_EQ(seen.rfind("POST /x HTTP/1.1", 0), 0u);
    EXPECT_NE(seen.find("X-Api-Key: k"), std::string::npos);
}

TEST(curl_transport, a_peer_that_trickles_bytes_is_cut_off_by_the_overall_deadline) {
    testing::loopback_server server([](int fd, testing::loopback_server& self) {
        write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
        for (int i = 0; i < 50 && !self.stopping(); ++i) {  // a byte every 100 ms, never finishing in time
            write_all(fd, "x");
            std::this_thread::sleep_for(100ms);
        }
    });
    auto t = make_curl_transport();
    auto start = steady::now();
    auto res = t->send({.url = url_of(server), .timeout = 700ms});
    auto took = steady::now() - start;
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::timeout);
    EXPECT_LT(took, 3s);  // bounded by the deadline, not by the trickle's idle gaps
}

TEST(curl_transport, a_peer_that_never_answers_times_out) {
    testing::loopback_server server([](int, testing::loopback_server& self) {
        for (int i = 0; i < 50 && !self.stopping(); ++i) std::this_thread::sleep_for(100ms);
    });
    auto t = make_curl_transport();
    auto res = t->send({.url = url_of(server), .timeout = 400ms});
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::timeout);
}

TEST(curl_transport, an_endless_chunked_body_is_cut_at_the_size_cap) {
    testing::loopback_server server([](int fd, testing::loopback_server& self) {
        write_all(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        std::string chunk = "4000\r\n" + std::string(0x4000, 'z') + "\r\n";
        for (int i = 0; i < 10'000 && !self.stopping(); ++i)
            if (::write(fd, chunk.data(), chunk.size()) <= 0) break;
    });
    auto t = make_curl_transport({.max_response_bytes = 256 * 1024});
    auto res = t->send({.url = url_of(server), .timeout = 10s});
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::invalid_argument);
    EXPECT_NE(res.error().detail().find("262144"), std::string::npos);
}

TEST(curl_transport, a_refused_connection_is_a_transport_error) {
    std::uint16_t port;
    { testing::loopback_server gone; port = gone.port(); }
    auto t = make_curl_transport();
    auto res = t->send({.url = "http://127.0.0.1:" + std::to_string(port) + "/", .timeout = 2s});
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::unavailable);
}

TEST(curl_transport, consecutive_calls_reuse_one_keep_alive_connection) {
    std::string const ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    testing::loopback_server server([&](int fd, testing::loopback_server& self) {
        write_all(fd, ok);  // the first request head was read by the server
        std::string pending;
        char buf[4096];
        while (!self.stopping()) {
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, 20) <= 0) continue;
            auto n = ::read(fd, buf, sizeof buf);
            if (n <= 0) return;
            pending.append(buf, static_cast<std::size_t>(n));
            for (auto end = pending.find("\r\n\r\n"); end != std::string::npos; end = pending.find("\r\n\r\n")) {
                pending.erase(0, end + 4);
                write_all(fd, ok);
            }
        }
    });
    auto t = make_curl_transport();
    for (int i = 0; i < 5; ++i) {
        auto res = t->send({.url = url_of(server), .timeout = 2s});
        ASSERT_TRUE(res) << res.error().message();
        EXPECT_EQ(res->body, "ok");
    }
    EXPECT_EQ(server.accepted(), 1);
}

TEST(curl_transport, redirects_are_not_followed) {
    testing::loopback_server server("HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest\r\nContent-Length: 0\r\n\r\n");
    auto t = make_curl_transport();
    auto res = t->send({.url = url_of(server)});
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 302);
    EXPECT_EQ(server.requests().size(), 1u);
}

}  // namespace
}  // namespace integration::http
