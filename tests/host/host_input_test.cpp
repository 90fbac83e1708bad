// Ambiguous input the host refuses instead of guessing, over raw sockets: Transfer-Encoding other
// than exactly `chunked`, duplicate Authorization headers, duplicate JSON keys, an encoded `/` in a
// path segment, and numbers out of range.

#include "host/host_process.hpp"
#include "host/http_client.hpp"

#include <gtest/gtest.h>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <sstream>

namespace integration::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

std::string str(json::value const& v, char const* name) {
    return std::string(v.at(name).as_string());
}

class host_input : public ::testing::Test {
protected:
    void SetUp() override {
        key_ = create_key(dir_.string(), "tenant-i");
        host_ = std::make_unique<host_process>(dir_.string(), std::vector<std::string>{"--key-rate-limit", "0"});
    }
    api client() const { return api(host_->port(), key_); }

    /** A Registered provider with one client, so that activating it would succeed. */
    std::string provider_with_client(std::string const& name) {
        auto p = client().post("/integrations/providers", json::object{{"key", name},
                                                                       {"displayName", "P"},
                                                                       {"category", "BusinessSystem"},
                                                                       {"authModel", "ApiKey"},
                                                                       {"baseUrl", "http://127.0.0.1:9"},
                                                                       {"capabilities", json::array{"x.send"}}});
        EXPECT_EQ(p.status, 201) << p.body;
        auto id = str(p.json(), "providerId");
        auto c = client().post(
            "/integrations/providers/" + id + "/clients",
            json::object{{"assemblyName", name + ".Client"},
                         {"version", "1.0.0"},
                         {"capabilities", json::array{"x.send"}},
                         {"authMode", "ApiKey"},
                         {"operations",
                          json::array{json::object{{"operation", "x.send"}, {"method", "POST"}, {"path", "/x"}}}}});
        EXPECT_EQ(c.status, 201) << c.body;
        return id;
    }

    scratch_dir dir_{"input"};
    std::string key_;
    std::unique_ptr<host_process> host_;
};

// Finding 13 (RFC 9112 6.1 and 6.3): a request whose Transfer-Encoding is not exactly one
// `chunked` is 400 and its connection closes, so a body that holds a second request is never
// executed, whichever way another server in front would have framed it.
TEST_F(host_input, transfer_encoding_other_than_exactly_chunked_is_400_and_the_smuggled_request_never_runs) {
    struct form {
        std::string version, fields;
        bool framed_chunked;  // how a lenient parser frames it: chunked, or no body at all
    };
    std::vector<form> const forms{
        {"1.1", "Transfer-Encoding: identity\r\n", false},
        {"1.1", "Transfer-Encoding: chunked, identity\r\n", false},
        {"1.1", "Transfer-Encoding: gzip, chunked\r\n", true},
        {"1.1", "Transfer-Encoding: chunked, chunked\r\n", true},
        {"1.1", "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", true},
        {"1.1", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", true},
        {"1.1", "Transfer-Encoding: Chunked \r\n", true},
        {"1.1", "Transfer-Encoding: chunked,\r\n", true},
        {"1.0", "Transfer-Encoding: chunked\r\n", true},  // HTTP/1.0 has no chunked coding
    };
    for (std::size_t i = 0; i < forms.size(); ++i) {
        auto body = json::serialize(json::object{{"key", "smuggled-" + std::to_string(i)},
                                                 {"displayName", "S"},
                                                 {"category", "BusinessSystem"},
                                                 {"authModel", "ApiKey"},
                                                 {"baseUrl", "http://127.0.0.1:9"},
                                                 {"capabilities", json::array{"x.send"}}});
        auto smuggled = client().request("POST", "/integrations/providers", body, {}, true);
        auto const& f = forms[i];
        auto raw = raw_exchange(host_->port(),
                                "GET /healthz HTTP/" + f.version + "\r\nHost: x\r\n" + f.fields + "\r\n" +
                                    (f.framed_chunked ? "0\r\n\r\n" : "") + smuggled,
                                5s);
        auto answer = parse_answer(raw);
        EXPECT_EQ(answer.status, 400) << f.fields << raw;
        EXPECT_EQ(str(answer.json(), "type"), "https://integration.dev/problems/bad-request") << f.fields;
        EXPECT_EQ(answer.headers["connection"], "close") << f.fields;
        EXPECT_EQ(answer.body.size(), std::stoul(answer.headers["content-length"]))
            << "a second answer: " << f.fields << raw;
    }
    auto list = client().get("/integrations/providers");
    ASSERT_EQ(list.status, 200);
    EXPECT_EQ(list.body.find("smuggled-"), std::string::npos) << list.body;
    // Exactly `chunked` still works.
    auto ok = parse_answer(raw_exchange(
        host_->port(), "POST /integrations/providers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key_ +
                           "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                           "Connection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n"));
    EXPECT_EQ(ok.status, 400) << ok.body;  // framed and parsed: the object lacks its fields
    EXPECT_EQ(str(ok.json(), "type"), "https://integration.dev/problems/validation") << ok.body;
}

// HEAD is answered as GET without the body (RFC 9110 9.3.2), and so is a refusal of HEAD: on a
// keep-alive connection a body after a HEAD answer would be read as the start of the next one.
TEST_F(host_input, head_is_answered_like_get_without_a_body_and_the_connection_stays_in_step) {
    auto const auth = "Authorization: Bearer " + key_ + "\r\n";
    provider_with_client("head-p");
    auto raw = raw_exchange(host_->port(), "HEAD /integrations/providers HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n" +
                                               "HEAD /integrations/nowhere HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n" +
                                               "GET /integrations/providers HTTP/1.1\r\nHost: x\r\n" + auth +
                                               "Connection: close\r\n\r\n");
    auto const first = raw.find("\r\n\r\n");
    ASSERT_NE(first, std::string::npos) << raw;
    auto head = parse_answer(raw.substr(0, first + 4));
    EXPECT_EQ(head.status, 200) << raw;
    auto rest = raw.substr(first + 4);
    ASSERT_TRUE(rest.starts_with("HTTP/1.1 404 ")) << "a body followed the HEAD answer: " << raw;
    auto const second = rest.find("\r\n\r\n");
    ASSERT_NE(second, std::string::npos) << raw;
    EXPECT_GT(std::stoul(parse_answer(rest.substr(0, second + 4)).headers["content-length"]), 0u);
    auto get = parse_answer(rest.substr(second + 4));
    ASSERT_EQ(get.status, 200) << "the GET after two HEADs was not read in step: " << raw;
    EXPECT_NE(get.body.find("head-p"), std::string::npos) << get.body;
    EXPECT_EQ(head.headers["content-length"], std::to_string(get.body.size()));
    EXPECT_EQ(head.headers["content-type"], get.headers["content-type"]);

    // A method the path lacks is 405, and Allow names HEAD with GET.
    auto listed = parse_answer(raw_exchange(host_->port(), "DELETE /integrations/providers HTTP/1.1\r\nHost: x\r\n" + auth +
                                                               "Connection: close\r\n\r\n"));
    EXPECT_EQ(listed.status, 405) << listed.body;
    EXPECT_NE(listed.headers["allow"].find("GET, HEAD"), std::string::npos) << listed.headers["allow"];
}

// A HEAD the connection itself refuses (a header over the limit, no Host) is answered without
// the problem's body too: the answer's Content-Length is the body's, and nothing follows it.
TEST_F(host_input, a_head_refused_before_routing_is_answered_without_a_body) {
    for (std::string const& request : {"HEAD /integrations/providers HTTP/1.1\r\nHost: x\r\nX-Big: " +
                                          std::string(64 * 1024, 'a') + "\r\n\r\n",
                                      std::string("HEAD /integrations/providers HTTP/1.1\r\n\r\n")}) {
        auto raw = raw_exchange(host_->port(), request);
        auto const end = raw.find("\r\n\r\n");
        ASSERT_NE(end, std::string::npos) << raw;
        auto answer = parse_answer(raw.substr(0, end + 4));
        EXPECT_TRUE(answer.status == 431 || answer.status == 400) << raw;
        EXPECT_GT(std::stoul(answer.headers["content-length"]), 0u) << raw;
        EXPECT_EQ(raw.substr(end + 4), "") << "a body followed the HEAD answer";
    }
}

// A chunk-size line, its extensions and trailer fields count against no body or header limit:
// one that never ends is refused once it outgrows the read buffer, instead of being buffered
// until the read timeout (11 GiB at loopback speed).
TEST_F(host_input, an_endless_chunk_extension_or_trailer_field_is_refused_without_being_buffered) {
    std::string const head = "POST /webhooks/inbound/conn-x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (std::string const start : {"1;a=", "0\r\nX-T: ", "00000000"}) {
        auto answer = parse_answer(raw_exchange(host_->port(), head + start + std::string(1 << 20, start[0] == '0' && start.size() == 8 ? '0' : 'b'),
                                                std::chrono::seconds(5)));
        EXPECT_EQ(answer.status, 400) << start;
        if (answer.status == 400) {
            EXPECT_EQ(str(answer.json(), "type"), "https://integration.dev/problems/bad-request");
        }
    }
    EXPECT_EQ(client().get("/integrations/providers").status, 200);
}

// A client without a key made the server read (and hold) every large body it announced before
// the key was checked: 1 MiB per request, several per connection. It is answered 401 from the
// header, before any of the body is sent, and the connection closes.
TEST_F(host_input, a_large_body_without_a_key_is_refused_before_it_is_read) {
    for (std::string const auth : {"", "Authorization: Bearer not-a-key\r\n", "Authorization: Basic dTpw\r\n",
                                   "Authorization: Bearer ik_made-up-0123456789abcdef0123456789abcdef\r\n",
                                   "Authorization: Bearer ik_made-up-0123456789abcdef0123456789abcdef\r\nExpect: 100-continue\r\n"}) {
        std::string const head = "POST /integrations/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth +
                                 "Content-Length: 1000000\r\n\r\n";
        auto answer = parse_answer(raw_exchange(host_->port(), head, std::chrono::seconds(3)));
        EXPECT_EQ(answer.status, 401) << auth;
        if (answer.status == 401) {
            EXPECT_EQ(str(answer.json(), "type"), "https://integration.dev/problems/unauthorized");
        }
    }
    EXPECT_EQ(client().get("/integrations/providers").status, 200);
    // A known key's large body is read and handled as ever.
    auto keyed = parse_answer(raw_exchange(host_->port(),
                                           "POST /integrations/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                           "Authorization: Bearer " + key_ + "\r\nConnection: close\r\nContent-Length: 70000\r\n\r\n" +
                                               std::string(70000, ' '),
                                           std::chrono::seconds(5)));
    EXPECT_EQ(keyed.status, 400) << keyed.body;  // read whole: a body of blanks is not a run
}

// Trailer fields would join the header's (RFC 9110 6.5.1 forbids merging them): a request that
// sends any, here its only Authorization, is refused and never acted on.
TEST_F(host_input, a_field_sent_after_a_chunked_body_is_refused) {
    std::string body = R"({"key":"trailer-smuggled","displayName":"T","category":"BusinessSystem","authModel":"ApiKey",)"
                       R"("baseUrl":"http://127.0.0.1:9","capabilities":["x.send"]})";
    std::ostringstream size;
    size << std::hex << body.size();
    for (std::string const& header_auth : {std::string(), "Authorization: Bearer " + key_ + "\r\n"}) {
        auto answer = parse_answer(raw_exchange(
            host_->port(), "POST /integrations/providers HTTP/1.1\r\nHost: x\r\n" + header_auth +
                               "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
                               size.str() + "\r\n" + body + "\r\n0\r\nAuthorization: Bearer " + key_ + "\r\n\r\n"));
        // Without a key in the header, a chunked body is refused (401) before it is read.
        EXPECT_EQ(answer.status, header_auth.empty() ? 401 : 400) << answer.body;
    }
    auto listed = client().get("/integrations/providers");
    EXPECT_EQ(listed.body.find("trailer-smuggled"), std::string::npos) << "the request never ran";
}

// JSON text is UTF-8: a caller's bytes that are not are refused (a key kept with a run would
// break every later listing) and never repeated raw in an answer or the access log.
TEST_F(host_input, text_that_is_not_utf8_is_refused_and_never_repeated_raw) {
    auto keyed = parse_answer(raw_exchange(
        host_->port(), client().request("POST", "/integrations/runs", R"({"connectionId":"conn-x","operation":"x.send"})",
                                        {{"Idempotency-Key", "k\xff\xfe"}})));
    EXPECT_EQ(keyed.status, 400) << keyed.body;
    EXPECT_NO_THROW((void)keyed.json()) << "an answer is UTF-8 JSON";
    for (std::string const target : {"/integrations/runs/%ff%fe", "/integrations/runs?status=%ff",
                                     "/integrations/connections?status=%c3%28", "/integrations/runs?%ff=1"}) {
        auto answer = client().get(target);
        EXPECT_EQ(answer.status, 400) << target << answer.body;
        EXPECT_NO_THROW((void)answer.json()) << target;
    }
    auto raw = parse_answer(raw_exchange(host_->port(), "GET /nowhere/\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    EXPECT_GE(raw.status, 400);
    EXPECT_NO_THROW((void)raw.json());
    auto log = host_->log_with("/nowhere/");
    std::istringstream lines(log);
    int parsed = 0;
    for (std::string line; std::getline(lines, line);) {
        if (line.find("/nowhere/") == std::string::npos) continue;
        EXPECT_NO_THROW((void)json::parse(line)) << "an access log line is JSON";
        ++parsed;
    }
    EXPECT_EQ(parsed, 1);
}

// Finding 18: two Authorization headers (any spelling) are 400, whichever of them is valid.
TEST_F(host_input, duplicate_authorization_headers_are_refused) {
    for (auto const& second : {std::string("Authorization: Bearer ik_someone_else"), "authorization: Bearer " + key_}) {
        auto raw =
            raw_exchange(host_->port(), "GET /integrations/providers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                                            key_ + "\r\n" + second + "\r\nConnection: close\r\n\r\n");
        auto answer = parse_answer(raw);
        EXPECT_EQ(answer.status, 400) << raw;
        EXPECT_EQ(str(answer.json(), "type"), "https://integration.dev/problems/bad-request") << raw;
        EXPECT_NE(str(answer.json(), "detail").find("Authorization"), std::string::npos) << raw;
    }
    EXPECT_EQ(client().get("/integrations/providers").status, 200);
}

// Two Content-Type or Idempotency-Key headers are 400 like two Authorization headers: the host
// would act on the first, a proxy in front may have read the last (the key that dedupes the run).
TEST_F(host_input, duplicate_content_type_or_idempotency_key_headers_are_refused) {
    std::string const body = R"({"connectionId": "conn-x", "operation": "x.send"})";
    auto post = [&](std::string const& fields) {
        return parse_answer(raw_exchange(host_->port(), "POST /integrations/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                                                            key_ + "\r\n" + fields + "Content-Length: " +
                                                            std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body));
    };
    for (auto const& [fields, name] :
         {std::pair{std::string("Content-Type: application/json\r\nContent-Type: text/plain\r\n"), "Content-Type"},
          std::pair{std::string("Content-Type: application/json\r\nIdempotency-Key: a\r\nidempotency-key: b\r\n"),
                    "Idempotency-Key"}}) {
        auto answer = post(fields);
        EXPECT_EQ(answer.status, 400) << answer.body;
        EXPECT_EQ(str(answer.json(), "type"), "https://integration.dev/problems/bad-request") << answer.body;
        EXPECT_NE(str(answer.json(), "detail").find(name), std::string::npos) << answer.body;
    }
    // One of each passes on to the route (whose connection does not exist).
    auto one = post("Content-Type: application/json\r\nIdempotency-Key: a\r\n");
    EXPECT_EQ(one.status, 404) << one.body;
}

// A query parameter the route does not take is 400 naming it, instead of being ignored: a
// misspelt filter (`stauts`) listed every run as if it had matched. A flag is `true` or `false`.
TEST_F(host_input, a_query_parameter_the_route_does_not_take_is_refused) {
    auto misspelt = client().get("/integrations/runs?stauts=Failed");
    EXPECT_EQ(misspelt.status, 400) << misspelt.body;
    EXPECT_EQ(str(misspelt.json(), "type"), "https://integration.dev/problems/validation") << misspelt.body;
    EXPECT_NE(str(misspelt.json(), "detail").find("`stauts`"), std::string::npos) << misspelt.body;
    EXPECT_NE(str(misspelt.json(), "detail").find("status"), std::string::npos) << misspelt.body;  // what it takes
    for (auto const* target : {"/integrations/providers?dryRun=true", "/integrations/providers/prov-1?expand=clients",
                               "/webhooks/deliveries?tenant=other"}) {
        auto answer = client().get(target);
        EXPECT_EQ(answer.status, 400) << target << answer.body;
    }
    auto on_post = client().post("/integrations/providers?force=1", json::object{});
    EXPECT_EQ(on_post.status, 400) << on_post.body;
    EXPECT_NE(str(on_post.json(), "detail").find("takes none"), std::string::npos) << on_post.body;

    auto yes = client().get("/integrations/failures?unresolved=yes");
    EXPECT_EQ(yes.status, 400) << yes.body;
    EXPECT_NE(str(yes.json(), "detail").find("unresolved must be true or false"), std::string::npos) << yes.body;
    EXPECT_EQ(client().get("/integrations/failures?unresolved=true").status, 200);
    EXPECT_EQ(client().get("/integrations/failures?unresolved=false&limit=5").status, 200);
    // A bare `?`, a trailing or doubled `&` asks for nothing (clients append them); an empty name
    // with a value is still a parameter nobody takes.
    for (auto const* target : {"/integrations/runs?", "/integrations/failures?limit=5&", "/integrations/failures?&&limit=5"}) {
        auto answer = client().get(target);
        EXPECT_EQ(answer.status, 200) << target << answer.body;
    }
    EXPECT_EQ(client().get("/integrations/runs?=x").status, 400);
    // host-api.md writes the filters `?runId=&deliveryId=`: a filter left empty filters nothing
    // (it matched no row, or was refused as a bad value), and a misspelt one is still refused.
    for (auto const* target : {"/integrations/failures?runId=&deliveryId=&unresolved=", "/integrations/providers?limit=&cursor=",
                               "/integrations/runs?connectionId=&status="}) {
        auto answer = client().get(target);
        EXPECT_EQ(answer.status, 200) << target << answer.body;
    }
    EXPECT_EQ(client().get("/integrations/runs?stauts=").status, 400);
    EXPECT_EQ(client().get("/integrations/runs?status=Failed&limit=1").status, 200);
}

// Finding 18: a JSON object with a key twice is 400 naming the key, at any depth and on every
// route that reads a body, instead of the last one silently winning.
TEST_F(host_input, duplicate_json_keys_are_refused_naming_the_key) {
    struct form {
        std::string target, body, key;
    };
    std::vector<form> const forms{
        {"/integrations/providers", R"({"key": "a", "displayName": "A", "key": "b"})", "key"},
        {"/integrations/providers",
         R"({"key": "a", "displayName": "A", "healthCheck": {"method": "GET", "path": "/h", "path": "/other"}})",
         "path"},
        {"/integrations/runs",
         R"({"connectionId": "conn-x", "operation": "x.send", "input": {"headers": {"X-Trace": "1", "X-Trace": "2"}}})",
         "X-Trace"},
        {"/integrations/runs",
         R"({"connectionId": "conn-x", "operation": "x.send", "input": {"body": [{"a": 1, "a": 2}]}})", "a"},
    };
    for (auto const& f : forms) {
        auto answer = client().call("POST", f.target, f.body);
        EXPECT_EQ(answer.status, 400) << f.body << answer.body;
        EXPECT_EQ(str(answer.json(), "type"), "https://integration.dev/problems/validation") << answer.body;
        EXPECT_NE(str(answer.json(), "detail").find("duplicate key '" + f.key + "'"), std::string::npos) << answer.body;
    }
    // The same name in sibling objects, or differing in case, is not a duplicate.
    auto fine = client().call(
        "POST", "/integrations/runs",
        R"({"connectionId": "conn-x", "operation": "x.send", "input": {"headers": {"X-A": "1", "x-a": "2"}, "body": [{"a": 1}, {"a": 2}]}})");
    EXPECT_EQ(fine.status, 404) << fine.body;  // parsed, then the connection is not found
}

// Finding 18: the path is split into segments before they are decoded, so `%2F` stays inside its
// segment: `{id}%2Factivate` is one (unknown) id, never the activate route.
TEST_F(host_input, an_encoded_slash_stays_inside_its_path_segment) {
    auto id = provider_with_client("slashes");
    auto encoded = client().call("POST", "/integrations/providers/" + id + "%2Factivate", "{}");
    EXPECT_EQ(encoded.status, 405) << encoded.body;  // POST /integrations/providers/{providerId}
    EXPECT_EQ(str(client().get("/integrations/providers/" + id).json(), "status"), "Registered");
    auto lower = client().call("POST", "/integrations/providers/" + id + "%2factivate", "{}");
    EXPECT_EQ(lower.status, 405) << lower.body;

    auto run = client().get("/integrations/runs/run-1%2Fx");
    EXPECT_EQ(run.status, 404) << run.body;
    EXPECT_EQ(str(run.json(), "type"), "https://integration.dev/problems/not-found") << run.body;  // the run route ran

    // Each segment is still decoded: `%70` is `p`.
    auto decoded = client().get("/integrations/providers/%70" + id.substr(1));
    EXPECT_EQ(decoded.status, 200) << decoded.body;
}

// Finding 18: a number too large for any double (1e999) or for its field is "out of range",
// not "is required" and not a silent infinity.
TEST_F(host_input, a_number_out_of_range_says_so) {
    for (auto const* number : {"1e999", "-1e999", "1e400"}) {
        auto body =
            std::string(R"({"key": "big", "displayName": "B", "category": "BusinessSystem", "authModel": "ApiKey", )") +
            R"("baseUrl": "http://127.0.0.1:9", "capabilities": ["x.send"], )" +
            R"("rateLimitProfile": {"requestsPerSecond": )" + number + R"(, "burst": 5}})";
        auto answer = client().call("POST", "/integrations/providers", body);
        EXPECT_EQ(answer.status, 400) << number << answer.body;
        auto detail = str(answer.json(), "detail");
        EXPECT_NE(detail.find("requestsPerSecond"), std::string::npos) << detail;
        EXPECT_NE(detail.find("out of range"), std::string::npos) << detail;
    }
    auto burst =
        client().call("POST", "/integrations/providers",
                      R"({"key": "big", "displayName": "B", "category": "BusinessSystem", "authModel": "ApiKey", )"
                      R"("baseUrl": "http://127.0.0.1:9", "capabilities": ["x.send"], )"
                      R"("rateLimitProfile": {"requestsPerSecond": 1, "burst": 1e30}})");
    EXPECT_EQ(burst.status, 400) << burst.body;
    EXPECT_NE(str(burst.json(), "detail").find("rateLimitProfile.burst is out of range"), std::string::npos)
        << burst.body;
}

}  // namespace
}  // namespace integration::testing
