#include <integration/backends/curl/curl_transport.hpp>
#include <integration/ports/transport.hpp>

#include "support/gzip.hpp"
#include "support/keep_alive_server.hpp"
#include "support/loopback_server.hpp"
#include "support/tcp_listener.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cstdlib>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

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

// libcurl reads a timeout of 0 as no deadline at all: an embedder's option of 0 (an attempt,
// probe or token timeout) must not make calls that can hang for ever. Nothing connects.
TEST(curl_transport, a_call_without_a_positive_deadline_is_refused_before_it_connects) {
    testing::loopback_server server;
    auto t = make_curl_transport();
    for (auto timeout : {0ms, -5ms}) {
        auto sent = t->send({.url = url_of(server), .timeout = timeout});
        ASSERT_FALSE(sent);
        EXPECT_EQ(sent.error(), errc::invalid_argument);
        std::promise<result<response>> done;
        t->start({.url = url_of(server), .timeout = timeout}, [&](result<response> r) { done.set_value(std::move(r)); });
        auto started = done.get_future().get();
        ASSERT_FALSE(started);
        EXPECT_EQ(started.error(), errc::invalid_argument);
    }
    EXPECT_EQ(server.accepted(), 0);
}

// The library keeps answers and searches them for echoed credentials: a vendor that compresses
// without being asked is decoded, and the kept headers describe the decoded body. A coding
// libcurl cannot decode fails the call as the vendor's answer, not as a passing network fault.
TEST(curl_transport, a_compressed_answer_nobody_asked_for_is_decoded) {
    std::string const plain = R"({"echo":")" + std::string(2000, 'e') + R"("})";
    auto const packed = testing::gzip(plain);
    ASSERT_LT(packed.size(), plain.size() / 4);
    testing::loopback_server server("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: " +
                                    std::to_string(packed.size()) + "\r\nX-Kept: yes\r\nConnection: close\r\n\r\n" + packed);
    auto t = make_curl_transport();
    for (bool started : {false, true}) {
        result<response> res = error{errc::cancelled, "not run"};
        if (started) {
            std::promise<result<response>> done;
            t->start({.url = url_of(server)}, [&](result<response> r) { done.set_value(std::move(r)); });
            res = done.get_future().get();
        } else {
            res = t->send({.url = url_of(server)});
        }
        ASSERT_TRUE(res) << res.error().message();
        EXPECT_EQ(res->body, plain);
        EXPECT_EQ(find_header(res->headers, "content-encoding"), "");
        EXPECT_EQ(find_header(res->headers, "content-length"), "");
        EXPECT_EQ(find_header(res->headers, "x-kept"), "yes");
    }
    for (auto const& seen : server.requests()) EXPECT_NE(seen.find("Accept-Encoding: identity\r\n"), std::string::npos) << seen;

    testing::loopback_server unknown("HTTP/1.1 200 OK\r\nContent-Encoding: x-unheard-of\r\nContent-Length: 4\r\n"
                                     "Connection: close\r\n\r\nabcd");
    auto res = t->send({.url = url_of(unknown)});
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::invalid_argument) << res.error().message();
    EXPECT_NE(res.error().detail().find("Content-Encoding"), std::string::npos) << res.error().detail();
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

// Whether the vendor may have seen the request decides whether a POST may be sent again.
TEST(curl_transport, a_call_that_ends_without_an_answer_says_whether_the_request_went_out) {
    auto t = make_curl_transport();
    testing::loopback_server silent([](int, testing::loopback_server&) {});  // reads the request, closes
    auto res = t->send({.method = "POST", .url = url_of(silent), .body = "charge", .timeout = 5s});
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::connection_lost) << res.error().detail();
    EXPECT_EQ(silent.requests().size(), 1u);
    testing::loopback_server cut([](int fd, testing::loopback_server&) {
        write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    });
    res = t->send({.method = "POST", .url = url_of(cut), .body = "charge", .timeout = 5s});
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::connection_lost) << res.error().detail();
    std::uint16_t port;
    { testing::loopback_server gone; port = gone.port(); }
    res = t->send({.method = "POST", .url = "http://127.0.0.1:" + std::to_string(port) + "/", .body = "charge", .timeout = 2s});
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::unavailable);
    EXPECT_NE(res.error().detail().find("nothing sent"), std::string::npos) << res.error().detail();
}

// libcurl sends a request again by itself when the reused connection it went out on dies before
// any answer (a vendor that read it, acted and dropped the connection). Not one that must not be
// repeated: that call ends as a lost connection, and the vendor sees the request once.
class a_reused_connection_that_dies : public ::testing::TestWithParam<bool> {};

TEST_P(a_reused_connection_that_dies, is_retried_by_libcurl_only_for_a_repeatable_request) {
    bool const repeatable = GetParam();
    testing::loopback_server server([](int fd, testing::loopback_server& self) {
        if (self.accepted() > 1) {  // libcurl's own second try
            if (!self.requests().back().empty()) write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nretry");
            return;
        }
        write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");  // kept alive
        pollfd p{fd, POLLIN, 0};
        char buf[4096];
        if (::poll(&p, 1, 5'000) > 0) (void)::read(fd, buf, sizeof buf);  // the second request: read, then closed
    });
    auto t = make_curl_transport();
    auto first = t->send({.method = "POST", .url = url_of(server), .body = "one", .timeout = 5s, .repeatable = repeatable});
    ASSERT_TRUE(first) << first.error().detail();
    auto second = t->send({.method = "POST", .url = url_of(server), .body = "two", .timeout = 5s, .repeatable = repeatable});
    auto heads = server.requests();
    auto sent_again = std::count_if(heads.begin() + 1, heads.end(), [](auto const& h) { return !h.empty(); });
    if (repeatable) {
        ASSERT_TRUE(second) << second.error().detail();
        EXPECT_EQ(second->body, "retry");
        EXPECT_EQ(sent_again, 1);
    } else {
        ASSERT_FALSE(second);
        EXPECT_EQ(second.error(), errc::connection_lost) << second.error().detail();
        EXPECT_EQ(sent_again, 0);
    }
}

INSTANTIATE_TEST_SUITE_P(curl_transport, a_reused_connection_that_dies, ::testing::Bool());

// libcurl would ask a large body to wait for `100 Continue`, and send the request again after a
// 417: never for a request that must not go out twice, so never at all.
TEST(curl_transport, a_large_body_goes_out_without_waiting_for_100_continue) {
    testing::keep_alive_server server([](testing::received_request const& r) {
        return r.header("Expect") ? testing::http_answer_bytes(417, "") : testing::http_answer_bytes(200, "ok");
    });
    auto t = make_curl_transport();
    std::string const body(2 * 1024 * 1024, 'x');
    auto res = t->send({.method = "POST", .url = "http://127.0.0.1:" + std::to_string(server.port()) + "/x", .body = body,
                        .timeout = 10s, .repeatable = false});
    ASSERT_TRUE(res) << res.error().detail();
    EXPECT_EQ(res->status, 200);
    ASSERT_EQ(server.requests().size(), 1u);
    EXPECT_FALSE(server.requests()[0].header("Expect"));
    EXPECT_EQ(server.requests()[0].body.size(), body.size());
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

TEST(curl_transport, framing_and_routing_headers_never_reach_the_wire) {
    testing::loopback_server server;
    auto t = make_curl_transport();
    for (std::string name : {"Content-Length", "content-length", "Transfer-Encoding", "Host", "Connection", "Keep-Alive",
                             "Upgrade", "TE", "te", "Trailer", "Proxy-Authorization", "Proxy-Connection", "proxy-anything"}) {
        auto res = t->send({.method = "POST", .url = url_of(server), .headers = {{"X-Fine", "1"}, {name, "0"}}, .body = "GET /x HTTP/1.1\r\n\r\n",
                            .timeout = 2s});
        ASSERT_FALSE(res) << name;
        EXPECT_EQ(res.error(), errc::invalid_argument) << name;
        EXPECT_NE(res.error().detail().find(name), std::string::npos) << res.error().detail();
    }
    EXPECT_EQ(server.accepted(), 0);
}

TEST(curl_transport, a_header_with_cr_lf_nul_or_a_name_that_is_not_a_token_never_reaches_the_wire) {
    testing::loopback_server server;
    auto t = make_curl_transport();
    std::vector<std::pair<std::string, std::string>> const bad{
        {"X-A", "a\r\nContent-Length: 0"}, {"X-A", "a\nb"}, {"X-A", "a\rb"}, {"X-A", std::string("a\0b", 3)},
        {"X-A", "a\x01b"}, {"X-A", "a\x7f"}, {"X-A\r\nHost", "b"}, {"X A", "b"}, {"X:A", "b"}, {"X-A ", "b"},
        {"", "b"}, {"X(A)", "b"}, {"X\"A", "b"}, {std::string("X\0A", 3), "b"}, {"X\xc3\xa9", "b"}};
    for (auto const& [name, value] : bad) {
        auto res = t->send({.url = url_of(server), .headers = {{name, value}}, .timeout = 2s});
        ASSERT_FALSE(res) << name;
        EXPECT_EQ(res.error(), errc::invalid_argument) << res.error().detail();
    }
    EXPECT_EQ(server.accepted(), 0);
    // Tabs and bytes above 0x7f are field content; every RFC 9110 token character is a name.
    auto res = t->send({.url = url_of(server), .headers = {{"X-!#$%&'*+.^_`|~09az", "tab\there \xc3\xa9"}}, .timeout = 2s});
    ASSERT_TRUE(res) << res.error().message();
    EXPECT_NE(server.requests().at(0).find("X-!#$%&'*+.^_`|~09az: tab\there \xc3\xa9\r\n"), std::string::npos);
}

// A transfer cut short (body over the cap, cancelled, or more bytes than its framing) leaves its
// connection closed: the next call opens a new one and reads its own answer, never the rest.
TEST(curl_transport, a_call_cut_short_never_leaves_its_connection_for_the_next_call) {
    auto stop = std::make_shared<cancellation>();
    std::atomic<bool> late_returned{false};
    testing::keep_alive_server server([&](testing::received_request const& r) -> std::string {
        if (r.target == "/big") return "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + std::string(1000, 'b');
        if (r.target == "/late") {
            // Cancelled while it waits for this answer, which comes only once the call returned
            // (however slow the machine, the answer never wins the race).
            stop->cancel();
            for (int i = 0; i < 1000 && !late_returned; ++i) std::this_thread::sleep_for(10ms);
            return "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate";
        }
        if (r.target == "/excess") return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled";
        return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(r.target.size()) + "\r\n\r\n" + r.target;
    });
    auto t = make_curl_transport({.max_response_bytes = 100});
    auto base = "http://127.0.0.1:" + std::to_string(server.port());
    auto own_answer = [&](std::string const& path) {
        auto res = t->send({.url = base + path, .timeout = 5s});
        ASSERT_TRUE(res) << res.error().message();
        EXPECT_EQ(res->body, path);
    };
    own_answer("/first");
    own_answer("/second");
    EXPECT_EQ(server.accepted(), 1);  // kept alive while every answer is read to its end

    EXPECT_EQ(t->send({.url = base + "/big", .timeout = 5s}).error(), errc::invalid_argument);
    own_answer("/after-big");
    EXPECT_EQ(server.accepted(), 2);

    EXPECT_EQ(t->send({.url = base + "/late", .timeout = 5s, .cancel = stop}).error(), errc::cancelled);
    late_returned = true;
    own_answer("/after-cancel");
    EXPECT_EQ(server.accepted(), 3);

    auto excess = t->send({.url = base + "/excess", .timeout = 5s});
    ASSERT_TRUE(excess) << excess.error().message();
    EXPECT_EQ(excess->body, "ok");
    own_answer("/after-excess");
    EXPECT_EQ(server.accepted(), 4);
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

// libcurl caps a header section but not the trailers after a chunked body, which it and the
// answer's header list kept without end: a vendor sending trailers for the attempt's whole
// timeout took the process to gigabytes. Past 256 KiB of fields the call fails.
TEST(curl_transport, endless_trailer_fields_fail_the_call_instead_of_filling_memory) {
    testing::loopback_server vendor([](int fd, testing::loopback_server&) {
        write_all(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n");
        std::string const field = "X-T: " + std::string(4000, 't') + "\r\n";
        for (int i = 0; i < 100'000; ++i)  // 400 MB, unless the client stops reading first
            if (::send(fd, field.data(), field.size(), MSG_NOSIGNAL) <= 0) return;
    });
    auto t = make_curl_transport({});
    auto res = t->send({.url = "http://127.0.0.1:" + std::to_string(vendor.port()) + "/x", .timeout = 30s});
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::invalid_argument) << res.error().message();
    EXPECT_NE(res.error().detail().find("trailer"), std::string::npos) << res.error().detail();
}

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

// libcurl reads no_proxy/NO_PROXY from the environment unless told a list: a process
// environment naming `*` sent every call around the proxy that enforces the egress policy.
TEST(curl_transport, the_no_proxy_environment_variables_do_not_bypass_the_configured_proxy) {
    scoped_env upper("NO_PROXY", "*"), lower("no_proxy", "*");
    testing::loopback_server proxy("HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nvia proxy");
    testing::loopback_server direct;
    auto t = make_curl_transport({.proxy = proxy_url(proxy)});
    auto res = t->send({.url = "http://127.0.0.1:" + std::to_string(direct.port()) + "/x", .timeout = 5s});
    ASSERT_TRUE(res) << res.error().message();
    EXPECT_EQ(res->body, "via proxy");
    EXPECT_EQ(direct.accepted(), 0);
}

// A pinned call through a proxy is a CONNECT tunnel to the checked address: the proxy is handed
// the address to check, never a name to resolve again.
TEST(curl_transport, with_a_proxy_a_pinned_call_is_tunnelled_to_the_pinned_address) {
    testing::loopback_server proxy([](int fd, testing::loopback_server&) {
        write_all(fd, "HTTP/1.1 200 Connection established\r\n\r\n");
        if (testing::read_head(fd).find("\r\n\r\n") == std::string::npos) return;
        write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nvia tunnel");
    });
    testing::loopback_server pinned;  // where the pin points; only the proxy connects onward
    auto t = make_curl_transport({.proxy = proxy_url(proxy)});
    auto port = std::to_string(pinned.port());
    auto res = t->send({.url = "http://api.vendor.test:" + port + "/x",
                        .timeout = 5s,
                        .pin = pinned_address{"api.vendor.test", pinned.port(), "127.0.0.1"}});
    ASSERT_TRUE(res) << res.error().message();
    EXPECT_EQ(res->body, "via tunnel");
    auto seen = proxy.requests().at(0);
    EXPECT_EQ(seen.rfind("CONNECT 127.0.0.1:" + port + " HTTP/1.1\r\n", 0), 0u) << seen;
    EXPECT_EQ(seen.find("api.vendor.test"), std::string::npos) << seen;
    EXPECT_EQ(pinned.accepted(), 0);
}

TEST(curl_transport, no_proxy_hosts_are_reached_directly_at_the_pinned_address) {
    testing::loopback_server proxy("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    testing::loopback_server direct;
    auto t = make_curl_transport({.proxy = proxy_url(proxy), .no_proxy = "direct.test"});
    auto res = t->send({.url = "http://direct.test:" + std::to_string(direct.port()) + "/x", .timeout = 5s,
                        .pin = pinned_address{"direct.test", direct.port(), "127.0.0.1"}});
    ASSERT_TRUE(res) << res.error().message();
    EXPECT_EQ(res->body, "ok");
    EXPECT_EQ(proxy.accepted(), 0);
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


// --- start: many calls in flight on one event loop ---

/** Collects the outcomes of started calls; waits for them with a bound. */
class outcomes {
public:
    transport::completion slot(std::string name) {
        return [this, name](result<response> r) {
            std::lock_guard lock(mutex_);
            done_.emplace_back(name, std::move(r));
            cv_.notify_all();
        };
    }
    bool wait_for(std::size_t n, std::chrono::seconds bound = 20s) {
        std::unique_lock lock(mutex_);
        return cv_.wait_for(lock, bound, [&] { return done_.size() >= n; });
    }
    std::vector<std::pair<std::string, result<response>>> take() {
        std::lock_guard lock(mutex_);
        return done_;
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<std::pair<std::string, result<response>>> done_;
};

std::string keep_alive_ok(testing::received_request const&) { return testing::http_answer_bytes(200, "ok"); }

TEST(curl_transport_start, overlapping_calls_complete_while_one_endpoint_hangs) {
    std::atomic<bool> release{false};
    testing::loopback_server hanging([&](int, testing::loopback_server& self) {
        while (!release && !self.stopping()) std::this_thread::sleep_for(10ms);
    });
    testing::keep_alive_server healthy(keep_alive_ok);
    auto t = make_curl_transport();
    outcomes got;
    t->start({.url = url_of(hanging), .timeout = 60s}, got.slot("hang"));
    for (int i = 0; i < 200; ++i)
        t->start({.method = "POST", .url = "http://127.0.0.1:" + std::to_string(healthy.port()) + "/n" + std::to_string(i),
                  .body = std::to_string(i), .timeout = 30s},
                 got.slot("ok"));
    ASSERT_TRUE(got.wait_for(200));
    auto done = got.take();
    for (auto const& [name, r] : done) {
        EXPECT_EQ(name, "ok");  // the hanging call is still in flight
        ASSERT_TRUE(r) << r.error().message();
        EXPECT_EQ(r->status, 200);
        EXPECT_EQ(r->body, "ok");
    }
    EXPECT_EQ(healthy.requests().size(), 200u);
    EXPECT_LE(healthy.accepted(), 200);
    release = true;
    ASSERT_TRUE(got.wait_for(201));
}

TEST(curl_transport_start, consecutive_calls_reuse_one_keep_alive_connection) {
    testing::keep_alive_server server(keep_alive_ok);
    auto t = make_curl_transport();
    outcomes got;
    for (std::size_t i = 1; i <= 20; ++i) {
        t->start({.url = "http://127.0.0.1:" + std::to_string(server.port()) + "/", .timeout = 5s}, got.slot("ok"));
        ASSERT_TRUE(got.wait_for(i));
    }
    for (auto const& [name, r] : got.take()) ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(server.accepted(), 1);
}

// The event loop reuses a finished call's handle without curl_easy_reset: nothing of one call
// (its pin, its body, its method, its headers) may reach the next one on that handle.
TEST(curl_transport_start, a_reused_handle_carries_nothing_of_the_previous_call) {
    auto answer = [](testing::received_request const& r) {
        return r.method == "HEAD" ? std::string("HTTP/1.1 200 X\r\nContent-Length: 2\r\n\r\n")
                                  : testing::http_answer_bytes(200, "ok");
    };
    testing::keep_alive_server pinned(answer), other(answer);
    auto t = make_curl_transport();
    outcomes got;
    auto port = std::to_string(pinned.port());
    auto other_url = "http://127.0.0.1:" + std::to_string(other.port());
    std::vector<request> calls{
        {.method = "POST",
         .url = "http://hooks.receiver.invalid:" + port + "/a",
         .headers = {{"X-Only-First", "1"}},
         .body = "payload-1",
         .timeout = 5s,
         .pin = pinned_address{"hooks.receiver.invalid", pinned.port(), "127.0.0.1"}},
        {.url = other_url + "/b", .timeout = 5s},
        {.method = "HEAD", .url = other_url + "/c", .timeout = 5s},
        {.url = other_url + "/d", .timeout = 5s},
    };
    // One call at a time, so each one after the first runs on the handle the one before used.
    for (std::size_t i = 0; i < calls.size(); ++i) {
        t->start(calls[i], got.slot(std::to_string(i)));
        ASSERT_TRUE(got.wait_for(i + 1));
    }
    auto done = got.take();
    for (auto const& [name, r] : done) ASSERT_TRUE(r) << name << ": " << r.error().message();
    EXPECT_EQ(done.at(2).second->body, "");
    EXPECT_EQ(done.at(3).second->body, "ok");  // the HEAD before it does not drop its body

    auto first = pinned.requests();
    ASSERT_EQ(first.size(), 1u);  // the pin stayed with its call
    EXPECT_EQ(first.at(0).method, "POST");
    EXPECT_EQ(first.at(0).body, "payload-1");
    auto rest = other.requests();
    ASSERT_EQ(rest.size(), 3u);
    EXPECT_EQ(rest.at(0).method, "GET");
    EXPECT_EQ(rest.at(0).target, "/b");
    EXPECT_EQ(rest.at(0).body, "");
    EXPECT_FALSE(rest.at(0).header("Content-Length"));
    EXPECT_FALSE(rest.at(0).header("X-Only-First"));
    EXPECT_EQ(rest.at(1).method, "HEAD");
    EXPECT_EQ(rest.at(2).method, "GET");
    EXPECT_EQ(rest.at(2).target, "/d");
}

// libcurl alone keeps four connections per call in flight and closes one idle connection at the
// end of each call beyond that: calls one at a time after a burst would close the burst's
// connections, and the next burst would connect again.
TEST(curl_transport_start, the_connections_of_a_burst_are_kept_for_the_next_burst) {
    constexpr int burst = 16;
    std::mutex m;
    std::condition_variable cv;
    std::map<std::string, int> arrived;
    // A burst is answered once all of it arrived, so that it holds `burst` connections at once.
    testing::keep_alive_server server([&](testing::received_request const& r) {
        if (r.target != "/one") {
            std::unique_lock lock(m);
            ++arrived[r.target];
            cv.notify_all();
            cv.wait_for(lock, 10s, [&] { return arrived[r.target] >= burst; });
        }
        return testing::http_answer_bytes(200, "ok");
    });
    auto t = make_curl_transport();
    auto base = "http://127.0.0.1:" + std::to_string(server.port());
    outcomes got;
    std::size_t expected = 0;
    auto run_burst = [&](std::string const& path) {
        for (int i = 0; i < burst; ++i) t->start({.url = base + path, .timeout = 20s}, got.slot(path));
        expected += burst;
        ASSERT_TRUE(got.wait_for(expected));
    };
    run_burst("/first");
    EXPECT_EQ(server.accepted(), burst);
    for (int i = 0; i < 2 * burst; ++i) {
        t->start({.url = base + "/one", .timeout = 5s}, got.slot("/one"));
        ASSERT_TRUE(got.wait_for(++expected));
    }
    run_burst("/second");
    for (auto const& [name, r] : got.take()) {
        ASSERT_TRUE(r) << name << ": " << r.error().message();
        EXPECT_EQ(r->status, 200);
    }
    EXPECT_EQ(server.accepted(), burst);
}

TEST(curl_transport_start, a_pinned_call_connects_to_the_pinned_address_and_keeps_the_host_name) {
    testing::keep_alive_server server(keep_alive_ok);
    auto t = make_curl_transport();
    outcomes got;
    // The name does not resolve anywhere: only the pin can take the call to the server.
    auto port = std::to_string(server.port());
    t->start({.url = "http://hooks.receiver.invalid:" + port + "/in",
              .timeout = 5s,
              .pin = pinned_address{"hooks.receiver.invalid", server.port(), "127.0.0.1"}},
             got.slot("pinned"));
    ASSERT_TRUE(got.wait_for(1));
    auto r = got.take().at(0).second;
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(server.requests().at(0).header("Host"), "hooks.receiver.invalid:" + port);
}

// Connections are kept per host name, but a kept connection to one pinned address must never
// carry a call pinned to another (the egress check vouched for the address, not the name): one
// name, one port, two addresses, with each call of either transport path.
TEST(curl_transport, a_connection_kept_for_one_pinned_address_never_carries_a_call_pinned_to_another) {
    testing::keep_alive_server first(keep_alive_ok);
    testing::keep_alive_server second(keep_alive_ok, "127.0.0.2", first.port());
    auto t = make_curl_transport();
    auto call = [&](std::string const& address) {
        return request{.url = "http://vendor.receiver.invalid:" + std::to_string(first.port()) + "/in",
                       .timeout = 5s,
                       .pin = pinned_address{"vendor.receiver.invalid", first.port(), address}};
    };
    outcomes got;
    std::size_t started = 0;  // counted here: a call may complete before `got` could be asked
    for (auto const* address : {"127.0.0.1", "127.0.0.2", "127.0.0.1", "127.0.0.2"}) {
        auto r = t->send(call(address));
        ASSERT_TRUE(r) << r.error().message();
        t->start(call(address), got.slot(address));
        ASSERT_TRUE(got.wait_for(++started));
    }
    for (auto const& [address, r] : got.take()) ASSERT_TRUE(r) << address << ": " << r.error().message();
    EXPECT_EQ(first.requests().size(), 4u);
    EXPECT_EQ(second.requests().size(), 4u);
}

TEST(curl_transport_start, a_call_that_gets_no_answer_times_out_alone) {
    testing::loopback_server silent([](int, testing::loopback_server& self) {
        while (!self.stopping()) std::this_thread::sleep_for(10ms);
    });
    testing::keep_alive_server healthy(keep_alive_ok);
    auto t = make_curl_transport();
    outcomes got;
    t->start({.url = url_of(silent), .timeout = 300ms}, got.slot("silent"));
    t->start({.url = "http://127.0.0.1:" + std::to_string(healthy.port()) + "/", .timeout = 10s}, got.slot("ok"));
    ASSERT_TRUE(got.wait_for(2));
    for (auto const& [name, r] : got.take()) {
        if (name == "ok") {
            EXPECT_TRUE(r);
        } else {
            ASSERT_FALSE(r);
            EXPECT_EQ(r.error(), errc::timeout);
        }
    }
}

TEST(curl_transport_start, a_cancelled_call_ends_with_cancelled_and_a_bad_header_is_refused_before_sending) {
    testing::loopback_server silent([](int, testing::loopback_server& self) {
        while (!self.stopping()) std::this_thread::sleep_for(10ms);
    });
    auto t = make_curl_transport();
    outcomes got;
    auto stop = std::make_shared<cancellation>();
    t->start({.url = url_of(silent), .timeout = 60s, .cancel = stop}, got.slot("cancelled"));
    for (int i = 0; i < 500 && silent.accepted() == 0; ++i) std::this_thread::sleep_for(10ms);
    stop->cancel();
    ASSERT_TRUE(got.wait_for(1));
    auto r = got.take().at(0).second;
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::cancelled);

    t->start({.url = url_of(silent), .headers = {{"X-A", "a\r\nb"}}}, got.slot("bad"));
    ASSERT_TRUE(got.wait_for(2));
    EXPECT_EQ(got.take().at(1).second.error(), errc::invalid_argument);
    EXPECT_EQ(silent.accepted(), 1);
}

TEST(curl_transport_start, a_body_over_the_cap_fails_the_call) {
    testing::keep_alive_server big([](testing::received_request const&) { return testing::http_answer_bytes(200, std::string(5000, 'x')); });
    auto t = make_curl_transport({.max_response_bytes = 1024});
    outcomes got;
    t->start({.url = "http://127.0.0.1:" + std::to_string(big.port()) + "/", .timeout = 5s}, got.slot("big"));
    ASSERT_TRUE(got.wait_for(1));
    auto r = got.take().at(0).second;
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::invalid_argument);
}

// A caller that wants only an excerpt of the answer gets its status, headers and the excerpt,
// however large the body and even past the transport's cap, and the transport stops reading
// there: a peer sending an endless body is not read to its end.
TEST(curl_transport_start, an_excerpt_of_the_body_is_kept_and_the_call_succeeds_past_the_cap) {
    testing::loopback_server endless([](int fd, testing::loopback_server& self) {
        write_all(fd, "HTTP/1.1 200 OK\r\nX-Seen: yes\r\nTransfer-Encoding: chunked\r\n\r\n");
        std::string chunk = "4000\r\n" + std::string(0x4000, 'z') + "\r\n";
        while (!self.stopping())  // until the client goes away
            if (::write(fd, chunk.data(), chunk.size()) <= 0) break;
    });
    auto t = make_curl_transport({.max_response_bytes = 1024});
    outcomes got;
    t->start({.url = url_of(endless), .timeout = 5s, .body_excerpt = 100}, got.slot("excerpt"));
    ASSERT_TRUE(got.wait_for(1));
    auto r = got.take().at(0).second;
    ASSERT_TRUE(r) << r.error().detail();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, std::string(100, 'z'));
    EXPECT_EQ(find_header(r->headers, "X-Seen"), "yes");
    // Without an excerpt the same body is over the cap: an error, as before.
    auto whole = t->send({.url = url_of(endless), .timeout = 5s});
    ASSERT_FALSE(whole);
    EXPECT_EQ(whole.error(), errc::invalid_argument);
}

TEST(curl_transport_start, closing_the_transport_completes_the_calls_in_flight_with_cancelled) {
    testing::loopback_server silent([](int, testing::loopback_server& self) {
        while (!self.stopping()) std::this_thread::sleep_for(10ms);
    });
    outcomes got;
    {
        auto t = make_curl_transport();
        for (int i = 0; i < 3; ++i) t->start({.url = url_of(silent), .timeout = 60s}, got.slot("pending"));
        for (int i = 0; i < 500 && silent.accepted() == 0; ++i) std::this_thread::sleep_for(10ms);
    }
    ASSERT_TRUE(got.wait_for(3, 1s));  // the destructor completed them before returning
    for (auto const& [name, r] : got.take()) {
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error(), errc::cancelled);
    }
}

}  // namespace
}  // namespace integration::http
