#include <integration/backends/curl/curl_transport.hpp>
#include <integration/outbound/redirects.hpp>

#include "support/loopback_server.hpp"
#include "support/tls_peer.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace integration::http {
namespace {

using namespace std::chrono_literals;
using net::cidr;
using net::ip_address;

std::string redirect(int status, std::string const& location) {
    return "HTTP/1.1 " + std::to_string(status) + " Redirect\r\nLocation: " + location +
           "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
}
std::string ok(std::string const& body) {
    return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

// A loopback server that answers by request target (path and query); unknown targets get 404.
testing::loopback_server routed(std::map<std::string, std::string> routes) {
    return testing::loopback_server([routes = std::move(routes)](int fd, testing::loopback_server& self) {
        auto const head = self.requests().back();
        auto const from = head.find(' ') + 1;
        auto const it = routes.find(head.substr(from, head.find(' ', from) - from));
        std::string const answer = it != routes.end()
                                       ? it->second
                                       : "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        (void)::write(fd, answer.data(), answer.size());
    });
}

std::string origin(testing::loopback_server const& s) {
    return "http://127.0.0.1:" + std::to_string(s.port());
}

bool has_line(std::string const& head, std::string const& line) {
    return head.find("\r\n" + line + "\r\n") != std::string::npos;
}
bool has_field(std::string const& head, std::string const& name) {
    return head.find("\r\n" + name + ":") != std::string::npos;
}

// Only 127.0.0.1 is reachable, over http too; names come from `dns` and every hop is recorded.
class redirects : public ::testing::Test {
protected:
    hop_check check() {
        return [this, egress = egress_hop_check(policy_, dns_)](std::string_view url) {
            hops_.emplace_back(url);
            return egress(url);
        };
    }

    net::static_resolver dns_;
    net::egress_policy policy_{.allow = {cidr::parse("127.0.0.1/32").value()}};
    std::vector<std::string> hops_;
    std::unique_ptr<transport> transport_ = make_curl_transport();
};

TEST_F(redirects, are_off_by_default_and_the_3xx_is_returned_untouched) {
    testing::loopback_server second;
    auto first = routed({{"/start", redirect(302, origin(second) + "/landing")}});
    auto res = send_following_redirects(*transport_, {.url = origin(first) + "/start", .timeout = 5s}, {}, check());
    ASSERT_TRUE(res) << res.error().message();
    EXPECT_EQ(res->status, 302);
    EXPECT_EQ(find_header(res->headers, "location"), origin(second) + "/landing");
    EXPECT_TRUE(hops_.empty());
    EXPECT_EQ(second.accepted(), 0);
}

TEST_F(redirects, a_hop_to_an_allowed_server_is_checked_and_followed_through_its_pin) {
    auto second = routed({{"/landing", ok("landed")}});
    // No DNS server answers for api.vendor.test: only the pin from the hop check reaches `second`.
    dns_.add("api.vendor.test", {*ip_address::parse("127.0.0.1")});
    auto const target = "http://api.vendor.test:" + std::to_string(second.port()) + "/landing";
    auto first = routed({{"/start", redirect(302, target)}});
    auto res = send_following_redirects(*transport_, {.url = origin(first) + "/start", .timeout = 5s}, {.max_hops = 3},
                                        check());
    ASSERT_TRUE(res) << res.error().message();
    EXPECT_EQ(res->status, 200);
    EXPECT_EQ(res->body, "landed");
    EXPECT_EQ(hops_, std::vector<std::string>{target});
    auto const seen = second.requests().at(0);
    EXPECT_EQ(seen.rfind("GET /landing HTTP/1.1", 0), 0u);
    EXPECT_TRUE(has_line(seen, "Host: api.vendor.test:" + std::to_string(second.port()))) << seen;
}

TEST_F(redirects, a_hop_to_a_denied_address_is_refused_before_connecting) {
    auto first = routed({{"/start", redirect(302, "http://169.254.169.254/latest/meta-data/")}});
    auto res = send_following_redirects(*transport_, {.url = origin(first) + "/start", .timeout = 5s}, {.max_hops = 3},
                                        check());
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::egress_denied);
    EXPECT_NE(res.error().detail().find("169.254.169.254"), std::string::npos) << res.error().detail();
    EXPECT_EQ(first.requests().size(), 1u);
}

TEST_F(redirects, a_hop_to_a_name_with_a_denied_answer_is_never_connected_to) {
    testing::loopback_server second;  // reachable through the name if the check were skipped
    dns_.add("rebind.test", {*ip_address::parse("127.0.0.1"), *ip_address::parse("10.0.0.1")});
    auto first = routed({{"/start", redirect(307, "http://rebind.test:" + std::to_string(second.port()) + "/")}});
    auto res = send_following_redirects(*transport_, {.url = origin(first) + "/start", .timeout = 5s}, {.max_hops = 3},
                                        check());
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::egress_denied);
    // The refusal says the policy refused the name, never which address it resolved to.
    EXPECT_EQ(res.error().detail().find("10.0.0.1"), std::string::npos) << res.error().detail();
    EXPECT_NE(res.error().detail().find("egress policy"), std::string::npos) << res.error().detail();
    EXPECT_EQ(second.accepted(), 0);
}

// A vendor may echo the call's URL, credential and all, into its Location in a spelling no
// redaction knows (encoded twice): a refusal names each URL by its origin only, so the error (kept
// in the run's failure and shown to callers) never holds the rest.
TEST_F(redirects, a_refusal_names_urls_by_their_origin_only) {
    std::string const echoed = "key%253Dsk_live%252B51Hx";
    dns_.add("login.vendor.test", {*ip_address::parse("10.0.0.7")});
    auto first = routed({{"/denied", redirect(302, "http://login.vendor.test/?return_to=%2Fstart%3F" + echoed)},
                         {"/gopher", redirect(302, "gopher://login.vendor.test/?" + echoed)},
                         {"/loop?" + echoed, redirect(302, "/loop?" + echoed)},
                         {"/bad", redirect(302, "http://[::1/?" + echoed)}});
    for (std::string path : {std::string("/denied"), std::string("/gopher"), "/loop?" + echoed, std::string("/bad")}) {
        auto res = send_following_redirects(*transport_, {.url = origin(first) + path, .timeout = 5s}, {.max_hops = 2}, check());
        ASSERT_FALSE(res) << path;
        EXPECT_EQ(res.error().detail().find("sk_live"), std::string::npos) << res.error().detail();
        EXPECT_EQ(res.error().detail().find("return_to"), std::string::npos) << res.error().detail();
    }
    auto denied = send_following_redirects(*transport_, {.url = origin(first) + "/denied", .timeout = 5s}, {.max_hops = 2}, check());
    EXPECT_NE(denied.error().detail().find("http://login.vendor.test:80"), std::string::npos) << denied.error().detail();
}

TEST_F(redirects, more_hops_than_allowed_fail) {
    auto server = routed({{"/a", redirect(302, "/b")}, {"/b", redirect(302, "/a")}});
    auto res =
        send_following_redirects(*transport_, {.url = origin(server) + "/a", .timeout = 5s}, {.max_hops = 3}, check());
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::invalid_argument);
    EXPECT_NE(res.error().detail().find("more than 3 redirects"), std::string::npos) << res.error().detail();
    EXPECT_EQ(server.requests().size(), 4u);  // the first request and three hops
    EXPECT_EQ(hops_.size(), 3u);
}

TEST_F(redirects, a_redirect_without_location_fails) {
    auto server = routed({{"/start", "HTTP/1.1 302 Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"}});
    auto res = send_following_redirects(*transport_, {.url = origin(server) + "/start", .timeout = 5s}, {.max_hops = 3},
                                        check());
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::invalid_argument);
    EXPECT_NE(res.error().detail().find("Location"), std::string::npos);
}

TEST_F(redirects, a_relative_location_is_resolved_against_the_current_url) {
    auto server = routed({{"/dir/start?x=0", redirect(301, "next?x=1")}, {"/dir/next?x=1", ok("relative")}});
    auto res = send_following_redirects(*transport_, {.url = origin(server) + "/dir/start?x=0", .timeout = 5s},
                                        {.max_hops = 3}, check());
    ASSERT_TRUE(res) << res.error().message();
    EXPECT_EQ(res->body, "relative");
    EXPECT_EQ(hops_, std::vector<std::string>{origin(server) + "/dir/next?x=1"});
}

TEST_F(redirects, see_other_turns_a_post_into_a_get_without_body) {
    auto server = routed({{"/form", redirect(303, "/done")}, {"/done", ok("done")}});
    auto res = send_following_redirects(*transport_,
                                        {.method = "POST",
                                         .url = origin(server) + "/form",
                                         .headers = {{"Content-Type", "application/x-www-form-urlencoded"}},
                                         .body = "a=1",
                                         .timeout = 5s},
                                        {.max_hops = 3}, check());
    ASSERT_TRUE(res) << res.error().message();
    EXPECT_EQ(res->body, "done");
    auto const seen = server.requests();
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_EQ(seen[0].rfind("POST /form HTTP/1.1", 0), 0u);
    EXPECT_EQ(seen[1].rfind("GET /done HTTP/1.1", 0), 0u) << seen[1];
    EXPECT_FALSE(has_field(seen[1], "Content-Type")) << seen[1];
    EXPECT_FALSE(has_field(seen[1], "Content-Length")) << seen[1];
}

TEST_F(redirects, temporary_redirect_keeps_the_method_and_body) {
    auto server = routed({{"/form", redirect(307, "/again")}, {"/again", ok("again")}});
    auto res = send_following_redirects(
        *transport_, {.method = "POST", .url = origin(server) + "/form", .body = "a=1", .timeout = 5s}, {.max_hops = 3},
        check());
    ASSERT_TRUE(res) << res.error().message();
    auto const seen = server.requests();
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_EQ(seen[1].rfind("POST /again HTTP/1.1", 0), 0u) << seen[1];
    EXPECT_TRUE(has_line(seen[1], "Content-Length: 3")) << seen[1];
}

// Notes whether each request it is given may go out twice, then sends it.
class noting final : public transport {
public:
    explicit noting(transport& t) : t_(t) {}
    result<response> send(request const& r) override {
        repeatable.push_back(r.repeatable);
        return t_.send(r);
    }
    std::vector<bool> repeatable;

private:
    transport& t_;
};

// A POST that may go out twice because the vendor dedupes it by its key: not at another origin,
// which gets no key, unless a 303 made it a GET.
TEST_F(redirects, a_keyed_post_may_go_out_twice_only_where_its_key_goes) {
    auto second = routed({{"/other", ok("other")}, {"/receipt", ok("receipt")}});
    auto first = routed({{"/start", redirect(307, "/same")},
                         {"/same", redirect(307, origin(second) + "/other")},
                         {"/see", redirect(303, origin(second) + "/receipt")}});
    request const keyed{.method = "POST", .url = origin(first) + "/start", .headers = {{"Idempotency-Key", "run-1"}},
                        .body = "charge", .timeout = 5s, .repeatable = true};
    noting t(*transport_);
    auto res = send_following_redirects(t, keyed, {.max_hops = 3}, check());
    ASSERT_TRUE(res) << res.error().message();
    EXPECT_EQ(res->body, "other");
    EXPECT_EQ(t.repeatable, (std::vector<bool>{true, true, false}));
    EXPECT_FALSE(has_field(second.requests().at(0), "Idempotency-Key")) << second.requests().at(0);

    noting see(*transport_);
    auto to_get = keyed;
    to_get.url = origin(first) + "/see";
    to_get.repeatable = false;  // an unkeyed POST
    res = send_following_redirects(see, to_get, {.max_hops = 3}, check());
    ASSERT_TRUE(res) << res.error().message();
    EXPECT_EQ(res->body, "receipt");
    EXPECT_EQ(see.repeatable, (std::vector<bool>{false, true}));
}

TEST_F(redirects, credentials_are_kept_on_the_same_origin_and_dropped_when_it_changes) {
    auto second = routed({{"/other", ok("other")}});
    auto first = routed({{"/start", redirect(302, "/same")}, {"/same", redirect(302, origin(second) + "/other")}});
    auto res = send_following_redirects(*transport_,
                                        {.url = origin(first) + "/start",
                                         .headers = {{"Authorization", "Bearer secret"},
                                                     {"Cookie", "session=1"},
                                                     {"X-Api-Key", "key-1"},
                                                     {"Accept", "application/json"},
                                                     {"X-Trace", "t-1"}},
                                         .timeout = 5s},
                                        {.max_hops = 3}, check());
    ASSERT_TRUE(res) << res.error().message();
    EXPECT_EQ(res->body, "other");
    auto const same = first.requests().at(1);
    EXPECT_EQ(same.rfind("GET /same HTTP/1.1", 0), 0u);
    EXPECT_TRUE(has_line(same, "Authorization: Bearer secret")) << same;
    EXPECT_TRUE(has_line(same, "Cookie: session=1")) << same;
    EXPECT_TRUE(has_line(same, "X-Api-Key: key-1")) << same;
    auto const cross = second.requests().at(0);  // another port is another origin
    EXPECT_FALSE(has_field(cross, "Authorization")) << cross;
    EXPECT_FALSE(has_field(cross, "Cookie")) << cross;
    // An API key travels under whatever name its vendor chose: only fields that never carry one go.
    EXPECT_FALSE(has_field(cross, "X-Api-Key")) << cross;
    EXPECT_FALSE(has_field(cross, "X-Trace")) << cross;
    EXPECT_TRUE(has_line(cross, "Accept: application/json")) << cross;
}

// Answers from a list and keeps every request it is given; connects nowhere.
class scripted final : public transport {
public:
    explicit scripted(std::vector<response> answers) : answers_(std::move(answers)) {}
    result<response> send(request const& r) override {
        sent.push_back(r);
        if (answers_.empty()) return error{errc::unavailable, "no answer scripted"};
        auto a = answers_.front();
        answers_.erase(answers_.begin());
        return a;
    }
    std::vector<request> sent;

private:
    std::vector<response> answers_;
};

// Boost.URL 1.81 reads https://93.184.216.34.evil.test as host 93.184.216.34 and a path: judged by
// that, a hop there looked like the same origin and took the call's credentials along. Origins are
// compared as the egress check reads them, and a relative Location against such a host (which
// would be resolved against the quad alone) is refused.
TEST_F(redirects, a_host_that_begins_with_the_same_ipv4_address_is_another_origin) {
    dns_.add("93.184.216.34.evil.test", {ip_address::parse("127.0.0.1").value()});
    scripted t({{.status = 302, .headers = {{"Location", "https://93.184.216.34.evil.test/steal"}}}, {.status = 200, .body = "x"}});
    auto res = send_following_redirects(
        t, {.url = "https://93.184.216.34/start", .headers = {{"Authorization", "Bearer secret"}, {"X-Api-Key", "k"}}, .timeout = 5s},
        {.max_hops = 3}, check());
    ASSERT_TRUE(res) << res.error().message();
    ASSERT_EQ(t.sent.size(), 2u);
    EXPECT_EQ(t.sent[1].url, "https://93.184.216.34.evil.test/steal");
    ASSERT_TRUE(t.sent[1].pin);
    EXPECT_EQ(t.sent[1].pin->host, "93.184.216.34.evil.test");
    EXPECT_TRUE(find_header(t.sent[1].headers, "Authorization").empty()) << "the credential went to another origin";
    EXPECT_TRUE(find_header(t.sent[1].headers, "X-Api-Key").empty());

    // The same origin still keeps them, spelled either way.
    dns_.add("127.0.0.1.vendor.test", {ip_address::parse("127.0.0.1").value()});
    scripted same({{.status = 302, .headers = {{"Location", "https://127.0.0.1.VENDOR.test:443/b"}}}, {.status = 200}});
    res = send_following_redirects(
        same, {.url = "https://127.0.0.1.vendor.test/a", .headers = {{"Authorization", "Bearer secret"}}, .timeout = 5s},
        {.max_hops = 3}, check());
    ASSERT_TRUE(res) << res.error().message();
    ASSERT_EQ(same.sent.size(), 2u);
    EXPECT_EQ(find_header(same.sent[1].headers, "Authorization"), "Bearer secret");

    scripted relative({{.status = 302, .headers = {{"Location", "/b"}}}, {.status = 200}});
    res = send_following_redirects(
        relative, {.url = "https://127.0.0.1.vendor.test/a", .headers = {{"Authorization", "Bearer secret"}}, .timeout = 5s},
        {.max_hops = 3}, check());
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::invalid_argument) << res.error().detail();
    EXPECT_EQ(relative.sent.size(), 1u) << "sent to " << relative.sent.back().url;
}

TEST_F(redirects, a_refusal_by_the_hop_check_keeps_its_code) {
    testing::loopback_server second;
    auto first = routed({{"/start", redirect(308, origin(second) + "/")}});
    auto refuse = [](std::string_view) -> result<std::optional<pinned_address>> {
        return error{errc::forbidden, "not on this connection's list"};
    };
    auto res = send_following_redirects(*transport_, {.url = origin(first) + "/start", .timeout = 5s}, {.max_hops = 3},
                                        refuse);
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::forbidden);
    EXPECT_NE(res.error().detail().find("not on this connection's list"), std::string::npos);
    EXPECT_EQ(second.accepted(), 0);
}

TEST_F(redirects, an_https_to_http_downgrade_is_refused) {
    testing::tls_peer secure;  // fails, never skips, without node and openssl
    testing::loopback_server plain;
    auto t = make_curl_transport({.ca_file = secure.cert_file()});
    auto const url =
        "https://127.0.0.1:" + std::to_string(secure.port()) + "/redirect?location=" + form_encode(origin(plain) + "/");
    auto res = send_following_redirects(*t, {.url = url, .timeout = 5s}, {.max_hops = 3}, check());
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::egress_denied);
    EXPECT_NE(res.error().detail().find("downgrades https to http"), std::string::npos) << res.error().detail();
    EXPECT_TRUE(hops_.empty());
    EXPECT_EQ(plain.accepted(), 0);
}

}  // namespace
}  // namespace integration::http
