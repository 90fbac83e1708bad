#include <integration/http/transport.hpp>

#include "support/loopback_server.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>

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

// Sets (or unsets, with nullopt) an environment variable for the scope, then restores it.
class scoped_env {
public:
    scoped_env(char const* name, std::optional<std::string> value) : name_(name) {
        if (auto const* old = std::getenv(name)) old_ = old;
        if (value)
            ::setenv(name, value->c_str(), 1);
        else
            ::unsetenv(name);
    }
    ~scoped_env() {
        if (old_)
            ::setenv(name_, old_->c_str(), 1);
        else
            ::unsetenv(name_);
    }
    scoped_env(scoped_env const&) = delete;
    scoped_env& operator=(scoped_env const&) = delete;

private:
    char const* name_;
    std::optional<std::string> old_;
};

std::string proxy_url(testing::loopback_server const& s) { return "http://127.0.0.1:" + std::to_string(s.port()); }

TEST(curl_transport, a_configured_proxy_receives_the_absolute_form_request_and_its_answer_is_returned) {
    testing::loopback_server proxy("HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nvia proxy");
    auto t = make_curl_transport({.proxy = proxy_url(proxy)});
    // upstream.test resolves nowhere: only the proxy can answer, and it resolves names itself.
    auto res = t->send({.url = "http://upstream.test:8080/v1/items?page=2", .headers = {{"X-Api-Key", "k"}}, .timeout = 5s});
    ASSERT_TRUE(res) << res.error().message();
    EXPECT_EQ(res->status, 200);
    EXPECT_EQ(res->body, "via proxy");
    auto seen = proxy.requests().at(0);
    EXPECT_EQ(seen.rfind("GET http://upstream.test:8080/v1/items?page=2 HTTP/1.1\r\n", 0), 0u) << seen;
    EXPECT_NE(seen.find("Host: upstream.test:8080"), std::string::npos);
    EXPECT_NE(seen.find("X-Api-Key: k"), std::string::npos);
}

TEST(curl_transport, with_a_proxy_the_pin_does_not_steer_the_connection) {
    testing::loopback_server proxy("HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nvia proxy");
    testing::loopback_server pinned;  // where the pin points; the proxy hop must not go there
    auto t = make_curl_transport({.proxy = proxy_url(proxy)});
    auto res = t->send({.url = "http://api.vendor.test:" + std::to_string(pinned.port()) + "/x",
                        .timeout = 5s,
                        .pin = pinned_address{"api.vendor.test", pinned.port(), "127.0.0.1"}});
    ASSERT_TRUE(res) << res.error().message();
    EXPECT_EQ(res->body, "via proxy");
    EXPECT_EQ(proxy.requests().size(), 1u);
    EXPECT_EQ(pinned.accepted(), 0);
}

TEST(curl_transport, no_proxy_hosts_are_reached_directly) {
    testing::loopback_server proxy("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    testing::loopback_server direct;
    auto t = make_curl_transport({.proxy = proxy_url(proxy), .no_proxy = "127.0.0.1"});
    auto res = t->send({.url = url_of(direct), .timeout = 5s});
    ASSERT_TRUE(res) << res.error().message();
    EXPECT_EQ(res->body, "ok");
    EXPECT_EQ(proxy.accepted(), 0);
}

TEST(curl_transport, proxy_environment_variables_are_ignored_without_the_option) {
    testing::loopback_server proxy("HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nvia proxy");
    testing::loopback_server direct;
    scoped_env http_proxy("http_proxy", proxy_url(proxy));
    scoped_env all_proxy("ALL_PROXY", proxy_url(proxy));
    scoped_env no_proxy("no_proxy", std::nullopt);
    scoped_env no_proxy_upper("NO_PROXY", std::nullopt);
    auto t = make_curl_transport();
    auto res = t->send({.url = url_of(direct), .timeout = 5s});
    ASSERT_TRUE(res) << res.error().message();
    EXPECT_EQ(res->body, "ok");
    EXPECT_EQ(direct.requests().size(), 1u);
    EXPECT_EQ(proxy.accepted(), 0);
}

TEST(curl_transport, a_call_cancelled_from_another_thread_ends_with_cancelled_before_its_deadline) {
    testing::loopback_server silent([](int, testing::loopback_server& self) {
        for (int i = 0; i < 200 && !self.stopping(); ++i) std::this_thread::sleep_for(50ms);
    });
    auto stop = std::make_shared<cancellation>();
    auto t = make_curl_transport();
    std::thread canceller([stop] {
        std::this_thread::sleep_for(100ms);
        stop->cancel();
    });
    auto start = steady::now();
    auto res = t->send({.url = url_of(silent), .timeout = 10s, .cancel = stop});
    auto took = steady::now() - start;
    canceller.join();
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::cancelled) << res.error().message();
    EXPECT_LT(took, 5s);  // ended by the cancellation, not by the 10 s deadline
}

TEST(curl_transport, a_call_cancelled_while_the_body_trickles_in_ends_with_cancelled) {
    testing::loopback_server server([](int fd, testing::loopback_server& self) {
        write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
        for (int i = 0; i < 100 && !self.stopping(); ++i) {
            if (::write(fd, "x", 1) <= 0) return;
            std::this_thread::sleep_for(50ms);
        }
    });
    auto stop = std::make_shared<cancellation>();
    auto t = make_curl_transport();
    std::thread canceller([stop] {
        std::this_thread::sleep_for(200ms);
        stop->cancel();
    });
    auto start = steady::now();
    auto res = t->send({.url = url_of(server), .timeout = 10s, .cancel = stop});
    auto took = steady::now() - start;
    canceller.join();
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::cancelled) << res.error().message();
    EXPECT_LT(took, 5s);
}

TEST(curl_transport, a_call_already_cancelled_is_not_sent) {
    testing::loopback_server server;
    auto stop = std::make_shared<cancellation>();
    stop->cancel();
    auto t = make_curl_transport();
    auto res = t->send({.url = url_of(server), .cancel = stop});
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::cancelled);
    EXPECT_EQ(server.accepted(), 0);
}

TEST(curl_transport, a_cancellation_flag_that_is_never_set_changes_nothing) {
    testing::loopback_server server;
    auto t = make_curl_transport();
    auto res = t->send({.url = url_of(server), .timeout = 5s, .cancel = std::make_shared<cancellation>()});
    ASSERT_TRUE(res) << res.error().message();
    EXPECT_EQ(res->body, "ok");
}

}  // namespace
}  // namespace integration::http
