// Outbound request safety through the real integration-host binary: what a tenant puts in a run
// cannot frame or route the vendor request, leave the operation's path, or reach an address the
// egress policy refuses (through tokens, managed identity, health checks or runs), and what a
// vendor echoes back never stores a secret.

#include "host/api_steps.hpp"
#include "host/host_process.hpp"
#include "support/base64.hpp"
#include "support/keep_alive_server.hpp"

#include <gtest/gtest.h>

#include <set>

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <tuple>
#include <sstream>

namespace integration::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

std::string slurp(std::filesystem::path const& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

/** Every file under `dir`, concatenated: what a `grep -r` of the data directory sees. */
std::string everything_under(std::filesystem::path const& dir) {
    std::string all;
    for (auto const& e : std::filesystem::recursive_directory_iterator(dir))
        if (e.is_regular_file()) all += slurp(e.path()) + "\n";
    return all;
}

std::string percent_encode(std::string_view in, bool plus_for_space = false) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : in) {
        if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            out += static_cast<char>(c);
        } else if (c == ' ' && plus_for_space) {
            out += '+';
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

std::string json_escaped(std::string_view s) {
    auto quoted = json::serialize(json::string(s));
    return quoted.substr(1, quoted.size() - 2);
}

// ---- finding 1: caller headers never frame or route, and one tenant cannot answer another's runs ----

TEST(host_outbound, caller_headers_cannot_frame_or_route_and_every_run_keeps_its_own_vendor_answer) {
    scratch_dir dir("smuggling");
    auto key_a = create_key(dir.string(), "tenant-a");
    auto key_b = create_key(dir.string(), "tenant-b");
    // One keep-alive vendor for both tenants, answering each request with the id in its path a
    // little later, as a real vendor would: a smuggled second request would answer the next caller.
    keep_alive_server vendor(
        [](received_request const& r) {
            auto id = r.target.substr(r.target.rfind('/') + 1);
            return http_answer_bytes(200, "{\"id\":\"" + id + "\"}", "X-Resource-Id: " + id + "\r\n");
        },
        "127.0.0.1", 0, 20ms);
    host_process host(dir.string(), {"--key-rate-limit", "0"});
    api a(host.port(), key_a), b(host.port(), key_b);
    auto base = "http://127.0.0.1:" + std::to_string(vendor.port());
    auto pa = provider_with(a, "shared-a", base, {op("echo.send", "POST", "/echo/{id}")});
    auto pb = provider_with(b, "shared-b", base, {op("echo.send", "POST", "/echo/{id}")});
    auto ca = active_connection(a, pa, api_key_credential(a, pa, "key-of-tenant-a"));
    auto cb = active_connection(b, pb, api_key_credential(b, pb, "key-of-tenant-b"));

    std::string const smuggled = "GET /echo/SMUGGLED HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    struct attempt {
        std::string name, value, named, body;
    };
    std::vector<attempt> const attempts{
        {"Content-Length", "0", "Content-Length", smuggled},
        {"content-length", "0", "content-length", smuggled},
        {"Transfer-Encoding", "chunked", "Transfer-Encoding", "0\r\n\r\n" + smuggled},
        {"X-Note", "a\r\nContent-Length: 0", "X-Note", smuggled},
        {"X-Note", "a\nContent-Length: 0", "X-Note", smuggled},
        {"X-Note", "a\rb", "X-Note", ""},
        {"X-Note", std::string("a\0b", 3), "X-Note", ""},
        {"X-Note\r\nContent-Length", "0", "input.headers", smuggled},
        {"X-Bad: y", "z", "input.headers", ""},
        {"Content-Length ", "0", "input.headers", smuggled},
        {"", "x", "input.headers", ""},
        {"Host", "internal.example", "Host", ""},
        {"Connection", "keep-alive, Upgrade", "Connection", ""},
        {"Keep-Alive", "timeout=600", "Keep-Alive", ""},
        {"Upgrade", "h2c", "Upgrade", ""},
        {"TE", "trailers", "TE", ""},
        {"Trailer", "X-Smuggled", "Trailer", ""},
        {"Expect", "100-continue", "Expect", ""},
        {"Proxy-Authorization", "Basic eDp5", "Proxy-Authorization", ""},
        {"Proxy-Connection", "keep-alive", "Proxy-Connection", ""},
        {"X-Api-Key", "chosen-by-the-caller", "X-Api-Key", ""},  // the credential's own header
        {"x-api-key", "chosen-by-the-caller", "x-api-key", ""},
    };
    int round = 0;
    for (auto const& at : attempts) {
        for (int i = 0; i < 3; ++i, ++round) {
            auto refused = run(a, ca, "echo.send",
                               {{"pathParams", json::object{{"id", "a" + std::to_string(round)}}},
                                {"headers", json::object{{at.name, at.value}}},
                                {"body", at.body}});
            EXPECT_EQ(refused.status, 400) << json::serialize(json::string(at.name)) << ": " << refused.body;
            if (refused.status == 400) {
                EXPECT_EQ(problem_type(refused), "https://integration.dev/problems/validation");
                EXPECT_NE(problem_detail(refused).find(at.named), std::string::npos) << refused.body;
            }
            auto id = "b" + std::to_string(round);
            auto mine = run(b, cb, "echo.send", {{"pathParams", json::object{{"id", id}}}, {"body", "{}"}});
            ASSERT_EQ(mine.status, 201) << mine.body;
            EXPECT_EQ(str(mine.json(), "status"), "Completed") << mine.body;
            EXPECT_EQ(str(mine.json().at("response"), "body"), "{\"id\":\"" + id + "\"}") << "round " << round;
            auto stored = b.get("/integrations/runs/" + str(mine.json(), "runId"));
            ASSERT_EQ(stored.status, 200);
            EXPECT_EQ(str(stored.json(), "externalRef"), id) << "round " << round;
        }
    }
    // Nothing of tenant A's reached the vendor (past its connection's health check), and no run
    // of A was recorded.
    std::size_t calls = 0;
    for (auto const& r : vendor.requests()) {
        if (r.target == "/health") continue;
        ++calls;
        EXPECT_EQ(r.target.rfind("/echo/b", 0), 0u) << r.head;
        EXPECT_EQ(r.header("X-Api-Key").value_or(""), "key-of-tenant-b") << r.head;
    }
    EXPECT_EQ(calls, static_cast<std::size_t>(round));
    auto runs_of_a = a.get("/integrations/runs");
    EXPECT_TRUE(runs_of_a.json().at("items").as_array().empty()) << runs_of_a.body;
}

// ---- issue 12: the connection's retryPolicy, environment and scopes govern its runs ----

TEST(host_outbound, a_connections_retry_policy_environment_and_scopes_govern_its_runs) {
    scratch_dir dir("connfields");
    auto key = create_key(dir.string(), "tenant-a");
    auto answer = [](std::string const& echo_body, int echo_status) {
        return [=](received_request const& r) {
            return r.target == "/health" ? http_answer_bytes(200, "ok") : http_answer_bytes(echo_status, echo_body);
        };
    };
    keep_alive_server production(answer("busy", 503));
    keep_alive_server sandbox(answer("from the sandbox", 200));
    host_process host(dir.string(), {"--key-rate-limit", "0", "--retry-interval-ms", "3600000"});
    api a(host.port(), key);
    auto calls = [](keep_alive_server& vendor) {
        std::size_t n = 0;
        for (auto const& r : vendor.requests()) n += r.target != "/health";
        return n;
    };
    auto provider = provider_with(
        a, "fields", "http://127.0.0.1:" + std::to_string(production.port()),
        {keyed_op("echo.send", "POST", "/echo/{id}"), op("echo.other", "POST", "/other")},
        {{"environments", json::array{json::object{{"name", "sandbox"}, {"baseUrl", "http://127.0.0.1:" + std::to_string(sandbox.port())}}}}});
    auto connection = [&](json::object fields) {
        json::object body{{"projectId", "p"}, {"providerId", provider}, {"displayName", "c"},
                          {"credentialId", api_key_credential(a, provider, "fields-key")}};
        for (auto const& [k, v] : fields) body[k] = v;
        return a.post("/integrations/connections", body);
    };
    auto active = [&](json::object fields) {
        auto c = connection(std::move(fields));
        EXPECT_EQ(c.status, 201) << c.body;
        EXPECT_EQ(str(c.json(), "status"), "Active") << c.body;
        return str(c.json(), "connectionId");
    };
    json::object const input{{"pathParams", json::object{{"id", "1"}}}, {"body", "{}"}};

    // One attempt by the connection's retryPolicy, where the host's defaults retry.
    auto once = active({{"retryPolicy", json::object{{"maxAttempts", 1}, {"initialDelayMs", 100}, {"maxDelayMs", 100}}}});
    auto r1 = run(a, once, "echo.send", input);
    EXPECT_TRUE(r1.status == 201 || r1.status == 202) << r1.body;
    EXPECT_EQ(calls(production), 1u);
    auto by_default = active({});
    auto r2 = run(a, by_default, "echo.send", input);
    EXPECT_TRUE(r2.status == 201 || r2.status == 202) << r2.body;
    EXPECT_GT(calls(production), 2u);  // the default retried
    for (auto const& r : production.requests())  // the operation's idempotencyHeader: the run's id, every attempt
        if (r.target != "/health" && r.target != "/echo/1") ADD_FAILURE() << r.target;
    auto sent_keys = std::set<std::string>();
    for (auto const& r : production.requests())
        if (r.target != "/health") sent_keys.insert(r.header("Idempotency-Key").value_or("(none)"));
    EXPECT_EQ(sent_keys, (std::set<std::string>{str(r1.json(), "runId"), str(r2.json(), "runId")}));

    // A POST without an idempotencyHeader or the caller's Idempotency-Key: the vendor may have
    // acted on it, so its 503 is escalated, not sent again.
    auto unkeyed_before = calls(production);
    auto unkeyed = run(a, by_default, "echo.other", {{"body", "{}"}});
    ASSERT_EQ(unkeyed.status, 201) << unkeyed.body;
    EXPECT_EQ(str(unkeyed.json(), "status"), "Failed");
    EXPECT_EQ(calls(production), unkeyed_before + 1);
    auto failure = a.get("/integrations/failures?runId=" + str(unkeyed.json(), "runId"));
    ASSERT_EQ(failure.json().at("items").as_array().size(), 1u) << failure.body;
    EXPECT_EQ(str(failure.json().at("items").at(0), "nextAction"), "Escalate") << failure.body;
    EXPECT_EQ(str(failure.json().at("items").at(0), "category"), "Transient") << failure.body;
    auto caller_keyed = run(a, by_default, "echo.other",
                            {{"body", "{}"}, {"headers", json::object{{"Idempotency-Key", "order-7"}}}});
    EXPECT_TRUE(caller_keyed.status == 201 || caller_keyed.status == 202) << caller_keyed.body;
    EXPECT_GT(calls(production), unkeyed_before + 2);  // the caller's own key: retried

    // The sandbox environment: probed and called there, never in production.
    auto before = calls(production);
    auto in_sandbox = active({{"environment", "sandbox"}});
    auto r3 = run(a, in_sandbox, "echo.send", input);
    ASSERT_EQ(r3.status, 201) << r3.body;
    EXPECT_EQ(str(r3.json().at("response"), "body"), "from the sandbox");
    EXPECT_EQ(calls(sandbox), 1u);
    EXPECT_EQ(calls(production), before);
    auto unknown = connection({{"environment", "staging"}});
    EXPECT_EQ(unknown.status, 400) << unknown.body;

    // An operation outside the granted scopes: 403 with a stable type, nothing recorded or sent.
    auto runs_before = a.get("/integrations/runs").json().at("items").as_array().size();
    auto scoped = active({{"scopes", json::array{"echo.other"}}});
    auto refused = run(a, scoped, "echo.send", input);
    ASSERT_EQ(refused.status, 403) << refused.body;
    EXPECT_EQ(problem_type(refused), "https://integration.dev/problems/scope-not-granted");
    EXPECT_NE(problem_detail(refused).find("\"echo.send\""), std::string::npos) << refused.body;
    EXPECT_EQ(calls(production), before);
    EXPECT_EQ(a.get("/integrations/runs").json().at("items").as_array().size(), runs_before);
    auto granted = run(a, scoped, "echo.other", {{"body", "{}"}});
    EXPECT_TRUE(granted.status == 201 || granted.status == 202) << granted.body;
}

// Numbers in path parameters, the query and headers reach the vendor as the caller wrote them
// (19.99 went as 1.999E1, 10.0 as 1E1); an integer past 64 bits, which JSON parsing has already
// rounded, is refused rather than sent as another number.
TEST(host_outbound, numbers_in_a_runs_input_reach_the_vendor_as_written) {
    scratch_dir dir("numbers");
    auto key = create_key(dir.string(), "tenant-a");
    keep_alive_server vendor([](received_request const&) { return http_answer_bytes(200, "{}"); });
    host_process host(dir.string(), {"--key-rate-limit", "0"});
    api a(host.port(), key);
    auto provider = provider_with(a, "numbers", "http://127.0.0.1:" + std::to_string(vendor.port()),
                                  {op("charges.get", "GET", "/charges/{id}")});
    auto conn = active_connection(a, provider, api_key_credential(a, provider, "numbers-key"));
    auto r = run(a, conn, "charges.get",
                 {{"pathParams", json::object{{"id", 1234567890123}}},
                  {"query", json::object{{"amount", 19.99}, {"price", 10.0}, {"n", -3}, {"live", true}, {"tiny", 0.5},
                                         {"big", 1000000.0}, {"small", 0.0001}}},
                  {"headers", json::object{{"X-Version", 2.5}}}});
    ASSERT_EQ(r.status, 201) << r.body;
    auto seen = vendor.requests();
    ASSERT_EQ(seen.size(), 2u);  // the health check, then the run
    EXPECT_EQ(seen[1].target, "/charges/1234567890123?amount=19.99&price=10&n=-3&live=true&tiny=0.5&big=1000000&small=0.0001");
    EXPECT_EQ(seen[1].header("X-Version").value_or(""), "2.5");
    auto too_large = run(a, conn, "charges.get", {{"pathParams", json::object{{"id", 123456789012345678901234.0}}}});
    EXPECT_EQ(too_large.status, 400) << too_large.body;
    EXPECT_NE(problem_detail(too_large).find("input.pathParams.id"), std::string::npos) << too_large.body;
    EXPECT_EQ(vendor.requests().size(), 2u) << "a rounded number was sent";
}

// ---- finding 4: path parameters are one segment; templates with dot segments are refused ----

TEST(host_outbound, path_parameters_never_leave_the_operations_path) {
    scratch_dir dir("paths");
    auto key = create_key(dir.string(), "tenant-a");
    keep_alive_server vendor([](received_request const&) { return http_answer_bytes(200, "{}"); });
    host_process host(dir.string(), {"--key-rate-limit", "0"});
    api a(host.port(), key);
    auto provider = provider_with(a, "files", "http://127.0.0.1:" + std::to_string(vendor.port()),
                                  {op("files.get", "GET", "/files/{name}/content")});
    auto conn = active_connection(a, provider, api_key_credential(a, provider, "files-key"));

    // Each is sent as one encoded segment, but a server or proxy that decodes %2F (nginx normalising
    // before proxy_pass) or reads '\\' as a separator would step out of /files/: refused, nothing sent.
    for (std::string value : {".", "..", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "..%2f..", "../secret", "..\\secret",
                              "%5c..%5csecret", "a/../../secret", "a/./b"}) {
        auto r = run(a, conn, "files.get", {{"pathParams", json::object{{"name", value}}}});
        EXPECT_EQ(r.status, 400) << value << ": " << r.body;
        if (r.status == 400) {
            EXPECT_NE(problem_detail(r).find("pathParams.name"), std::string::npos) << r.body;
        }
    }
    std::vector<std::string> const accepted{"/", "%2f", "a/b", "...", "..;", " ..", "?x=1#y", "..a/b.."};
    for (auto const& value : accepted) {
        auto r = run(a, conn, "files.get", {{"pathParams", json::object{{"name", value}}}});
        ASSERT_EQ(r.status, 201) << value << ": " << r.body;
        EXPECT_EQ(str(r.json(), "status"), "Completed") << value;
    }
    auto seen = vendor.requests();
    ASSERT_EQ(seen.size(), 1 + accepted.size());  // the health check, then one call per value
    for (std::size_t i = 1; i < seen.size(); ++i) {
        auto const& target = seen[i].target;
        ASSERT_EQ(target.rfind("/files/", 0), 0u) << target;
        ASSERT_TRUE(target.ends_with("/content")) << target;
        auto segment = target.substr(7, target.size() - 7 - 8);
        EXPECT_EQ(segment.find_first_of("/\\?#"), std::string::npos) << target;
        EXPECT_EQ(segment, percent_encode(accepted[i - 1])) << "one encoded segment per parameter";
    }

    for (std::string path : {"/a/../b", "/a/./b", "/..", "/a/..", "/a/%2e%2e/b", "/a/%2E./b", "/a/.%2e/b", "/a/..%2fb",
                             "/a/..%2Fb", "/a/..%5cb", "/a/..\\b", "/{name}/../admin", "/./{name}"}) {
        auto c = a.post("/integrations/providers/" + provider + "/clients",
                        json::object{{"assemblyName", "Dots.Client"}, {"version", "1.0.0"}, {"capabilities", json::array{"files.get"}},
                                     {"authMode", "ApiKey"}, {"operations", json::array{op("files.get", "GET", path)}}});
        EXPECT_EQ(c.status, 400) << path << ": " << c.body;
        if (c.status == 400) {
            EXPECT_NE(problem_detail(c).find("path"), std::string::npos) << c.body;
        }
    }
    auto fine = a.post("/integrations/providers/" + provider + "/clients",
                       json::object{{"assemblyName", "Dots.Client"}, {"version", "1.0.1"}, {"capabilities", json::array{"files.get"}},
                                    {"authMode", "ApiKey"}, {"operations", json::array{op("files.get", "GET", "/.well-known/{name}/.../x")}}});
    EXPECT_EQ(fine.status, 201) << fine.body;
}

// ---- finding 12: what a vendor echoes back is stored and returned without the secret ----

TEST(host_outbound, secrets_a_vendor_echoes_are_redacted_from_answers_runs_and_blobs) {
    scratch_dir dir("echoes");
    auto key = create_key(dir.string(), "tenant-a");
    std::string const api_key = "sk_live_R3D4CT/me+\"now\"\\end";
    std::string const access_token = "at-R3D4CT.TOKEN/with+chars=";
    std::string const client_secret = "cs-R3D4CT-client-secret";
    // The vendor echoes its request head and body raw, JSON-escaped, percent-encoded, form-encoded
    // and in base64 and base64url, and the credential headers in answer headers.
    keep_alive_server vendor([](received_request const& r) {
        if (r.target == "/health") return http_answer_bytes(200, "{}");
        auto text = r.head + "\r\n\r\n" + r.body;
        auto body = "RAW " + text + "\nJSON \"" + json_escaped(text) + "\"\nPCT " + percent_encode(text) + "\nFORM " +
                    percent_encode(text, true) + "\nB64 " + base64(text) + "\nB64URL " + base64(text, true) + "\n";
        std::string extra;
        for (auto const* name : {"X-Api-Key", "Authorization"})
            if (auto v = r.header(name)) extra += std::string("X-Echo-") + name + ": " + *v + "\r\n";
        return http_answer_bytes(200, body, extra);
    });
    keep_alive_server idp([&](received_request const&) {
        return http_answer_bytes(200, "{\"access_token\":\"" + json_escaped(access_token) + "\",\"token_type\":\"Bearer\",\"expires_in\":3600}");
    });
    host_process host(dir.string(), {"--key-rate-limit", "0"});
    api a(host.port(), key);
    auto provider = provider_with(a, "mirror", "http://127.0.0.1:" + std::to_string(vendor.port()),
                                  {op("mirror.send", "POST", "/mirror/{id}")});
    auto by_key = active_connection(a, provider, api_key_credential(a, provider, api_key));
    auto by_token = active_connection(
        a, provider,
        create_credential(a, {{"providerId", provider}, {"authMode", "OAuth2ClientCredentials"}, {"secret", client_secret},
                              {"oauth2", json::object{{"tokenUrl", "http://127.0.0.1:" + std::to_string(idp.port()) + "/token"},
                                                      {"clientId", "client-1"}, {"scopes", json::array{}}}}}));

    // The vendor did see the secrets: there is something to redact.
    std::vector<std::string> answers;
    for (auto const& conn : {by_key, by_token}) {
        auto r = run(a, conn, "mirror.send", {{"pathParams", json::object{{"id", "1"}}}, {"body", "{\"note\":\"hello\"}"}});
        ASSERT_EQ(r.status, 201) << r.body;
        EXPECT_EQ(str(r.json(), "status"), "Completed");
        auto response_body = str(r.json().at("response"), "body");
        EXPECT_NE(response_body.find("hello"), std::string::npos) << "the rest of the body is kept";
        EXPECT_NE(response_body.find("[REDACTED]"), std::string::npos) << response_body;
        answers.push_back(r.body);
        answers.push_back(a.get("/integrations/runs/" + str(r.json(), "runId")).body);
    }
    auto seen = vendor.requests();
    ASSERT_EQ(seen.size(), 4u);  // two health checks, two runs
    EXPECT_EQ(seen[2].header("X-Api-Key"), api_key);
    EXPECT_EQ(seen[3].header("Authorization"), "Bearer " + access_token);

    answers.push_back(everything_under(dir.path()));  // blobs, databases and the host's log
    for (auto const& secret : {api_key, access_token, client_secret}) {
        for (auto const& text : answers) {
            for (auto const& form : {secret, json_escaped(secret), json_escaped(json_escaped(secret)), percent_encode(secret),
                                     percent_encode(secret, true), base64(secret), base64(secret, true)})
                EXPECT_EQ(text.find(form), std::string::npos) << "found " << form;
            // Base64 of the echoed request at whatever alignment: decode each B64 line.
            for (auto at = text.find("B64"); at != std::string::npos; at = text.find("B64", at + 3)) {
                auto line = text.substr(at, text.find_first_of("\n\\", at) - at);
                EXPECT_EQ(unbase64(line.substr(line.find(' ') + 1)).find(secret), std::string::npos) << line;
            }
        }
    }
}

// ---- finding 2: every outbound call passes the egress check, pinned to the checked address ----

/** One address of the deny list (`egress-and-bad-input.md`) a test name resolves to. */
struct refused_address {
    std::string text;
    bool on_loopback;  // reaches a listener on 127.0.0.2 if connected to
};

std::vector<refused_address> const refused_addresses{
    {"0.0.0.1", false}, {"10.1.2.3", false}, {"100.64.0.1", false}, {"127.0.0.2", true},
    {"169.254.169.254", false}, {"172.16.0.1", false}, {"192.0.0.8", false}, {"192.0.2.1", false},
    {"192.168.1.1", false}, {"198.18.0.1", false}, {"198.51.100.1", false}, {"203.0.113.1", false},
    {"224.0.0.1", false}, {"240.0.0.1", false}, {"255.255.255.255", false},
    {"::", false}, {"::1", false}, {"fe80::1", false}, {"fc00::1", false}, {"fd12:3456::1", false},
    {"ff02::1", false}, {"2001:db8::1", false},
    // IPv4 wrapped in IPv6: mapped (two spellings), compatible, NAT64, 6to4, Teredo (the client
    // address is the last 32 bits inverted): each wraps 127.0.0.2 or the metadata address.
    {"::ffff:127.0.0.2", true}, {"::ffff:7f00:2", true}, {"::ffff:169.254.169.254", false},
    {"::127.0.0.2", false}, {"64:ff9b::7f00:2", false}, {"2002:7f00:2::1", false},
    {"2001:0:4136:e378:8000:63bf:80ff:fffd", false},
};

/** A hosts file naming `caseN.test` for every refused address. Each name first resolves to the
 *  allowed 127.0.0.1, whose listeners stand in for the refused address: a check that looked at
 *  one answer only, or a connection to an unchecked one, reaches them. With `refused` false the
 *  names resolve to 127.0.0.1 alone. Names are written in mixed spellings (upper case, trailing
 *  dot): the resolver answers the name as the check canonicalises it. */
std::string hosts_file(scratch_dir const& dir, std::string const& file, bool refused) {
    auto path = (dir.path() / file).string();
    std::ofstream out(path);
    out << "# test names\n";
    for (std::size_t n = 0; n < refused_addresses.size(); ++n) {
        auto name = "case" + std::to_string(n) + ".test";
        auto spelled = n % 3 == 0 ? name : n % 3 == 1 ? "CASE" + std::to_string(n) + ".TEST" : name + ".";
        out << "127.0.0.1 " << spelled << "\n";
        if (refused) out << refused_addresses[n].text << "\t" << spelled << "   # refused\n";
    }
    return path;
}

std::string case_host(std::size_t n) { return "case" + std::to_string(n) + ".test"; }

/** The failure recorded for a Failed run. */
json::value failure_of(api const& a, http_answer const& run_answer) {
    auto failures = a.get("/integrations/failures?runId=" + str(run_answer.json(), "runId"));
    auto listed = failures.json();
    EXPECT_EQ(listed.at("items").as_array().size(), 1u) << failures.body;
    return listed.at("items").as_array().empty() ? json::value() : listed.at("items").at(0);
}

// Every outbound path of the host (a run, a health check, a rotation's check, an OAuth2 token
// request, a managed-identity token request, an authorization-code exchange, a redirect a run
// follows) x every refused range, reached through a name that resolved to an allowed address
// when the connection was made (DNS rebinding).
TEST(host_outbound, every_outbound_path_refuses_every_refused_address_a_name_resolves_to) {
    scratch_dir dir("egress");
    auto key = create_key(dir.string(), "tenant-a");
    std::string const client_secret = "cs-EGRESS-never-leaves-9f8e7d";
    auto token_json = [](received_request const&) {
        return http_answer_bytes(200, "{\"access_token\":\"tok-1\",\"token_type\":\"Bearer\",\"expires_in\":\"3600\"}");
    };
    auto ok = [](received_request const&) { return http_answer_bytes(200, "{}"); };
    keep_alive_server vendor(ok), idp(token_json), imds(token_json);
    keep_alive_server vendor_inside(ok, "127.0.0.2", vendor.port());
    keep_alive_server idp_inside(token_json, "127.0.0.2", idp.port());
    keep_alive_server imds_inside(token_json, "127.0.0.2", imds.port());
    auto port = [](keep_alive_server const& s) { return std::to_string(s.port()); };
    // An allowed vendor whose answer to /go/{scheme}/{n} redirects a run to case n.
    keep_alive_server redirector([&](received_request const& r) {
        if (r.target == "/health") return http_answer_bytes(200, "{}");
        auto slash = r.target.rfind('/');
        auto scheme = r.target.substr(4, slash - 4);
        auto n = std::stoul(r.target.substr(slash + 1));
        return http_answer_bytes(302, "{}", "Location: " + scheme + "://" + case_host(n) + ":" + port(vendor) + "/landing\r\n");
    });
    // http only reaches allow-listed addresses, so an https URL is what shows that each range is
    // refused for what it is (a TLS hello would reach a stand-in); http shows the rebinding.
    auto token_url = [&](std::size_t n, std::string const& scheme = "http") {
        return scheme + "://" + case_host(n) + ":" + port(idp) + "/token";
    };
    auto imds_url = [&](std::size_t n, std::string const& scheme = "http") {
        return scheme + "://" + case_host(n) + ":" + port(imds) + "/metadata/identity/oauth2/token?api-version=2018-02-01";
    };
    std::vector<std::string> const allow{"--egress-allow", "127.0.0.1/32", "--key-rate-limit", "0", "--max-redirects", "3",
                                         "--managed-identity-tenant", "tenant-a"};

    struct per_case {
        std::string by_key, key_credential, by_token, by_identity, redirected;
    };
    std::vector<per_case> made(refused_addresses.size());
    std::string literal;
    {
        auto args = allow;
        args.insert(args.end(), {"--hosts-file", hosts_file(dir, "hosts-allowed", false)});
        host_process host(dir.string(), args);
        api a(host.port(), key);
        literal = provider_with(a, "literal", "http://127.0.0.1:" + port(vendor), {op("echo.send", "POST", "/echo/{id}")});
        auto to_redirector = provider_with(a, "redirecting", "http://127.0.0.1:" + port(redirector), {op("go", "POST", "/go/{scheme}/{n}")});
        for (std::size_t n = 0; n < refused_addresses.size(); ++n) {
            auto& m = made[n];
            auto named = provider_with(a, "named-" + std::to_string(n), "http://" + case_host(n) + ":" + port(vendor),
                                       {op("echo.send", "POST", "/echo/{id}")});
            // A connection each, so that no circuit breaker opens on the failures to come.
            m.redirected = active_connection(a, to_redirector, api_key_credential(a, to_redirector, "api-key-r"));
            m.key_credential = api_key_credential(a, named, "api-key-1");
            m.by_key = active_connection(a, named, m.key_credential);
            m.by_token = active_connection(
                a, literal,
                create_credential(a, {{"providerId", literal}, {"authMode", "OAuth2ClientCredentials"}, {"secret", client_secret},
                                      {"oauth2", json::object{{"tokenUrl", token_url(n)}, {"clientId", "c1"}, {"scopes", json::array{}}}}}));
            m.by_identity = active_connection(
                a, literal,
                create_credential(a, {{"providerId", literal}, {"authMode", "ManagedIdentity"},
                                      {"managedIdentity", json::object{{"endpointUrl", imds_url(n)}, {"resource", "https://vendor.test/"}}}}));
        }
        // While the name resolves to an allowed address, the redirect is followed to it.
        auto followed = run(a, made[0].redirected, "go", {{"pathParams", json::object{{"scheme", "http"}, {"n", "0"}}}, {"body", "{}"}});
        EXPECT_EQ(str(followed.json(), "status"), "Completed") << followed.body;
        EXPECT_EQ(vendor.requests().back().target, "/landing");
        ASSERT_FALSE(::testing::Test::HasFailure()) << "the setup failed: " << host.log();
    }

    // The names now also resolve to a refused address, as a rebinding DNS answer would.
    auto args = allow;
    args.insert(args.end(), {"--hosts-file", hosts_file(dir, "hosts-refused", true)});
    host_process host(dir.string(), args);
    api a(host.port(), key);
    auto const vendor_seen = vendor.bytes_received(), idp_seen = idp.bytes_received(), imds_seen = imds.bytes_received();
    std::vector<std::string> answers;
    for (std::size_t n = 0; n < refused_addresses.size(); ++n) {
        auto const& address = refused_addresses[n].text;
        SCOPED_TRACE("case " + std::to_string(n) + ": " + address);
        auto const& m = made[n];
        std::vector<http_answer> case_answers;
        // A run (to the provider's base URL, with a token, with a managed identity, or redirected
        // there): Failed, its failure says the egress policy refused it.
        std::vector<std::pair<std::string, http_answer>> runs{
            {"run", run(a, m.by_key, "echo.send", {{"pathParams", json::object{{"id", "1"}}}, {"body", "{}"}})},
            {"token", run(a, m.by_token, "echo.send", {{"pathParams", json::object{{"id", "1"}}}, {"body", "{}"}})},
            {"managed identity", run(a, m.by_identity, "echo.send", {{"pathParams", json::object{{"id", "1"}}}, {"body", "{}"}})},
            {"redirect", run(a, m.redirected, "go", {{"pathParams", json::object{{"scheme", "http"}, {"n", std::to_string(n)}}}, {"body", "{}"}})},
            {"https redirect", run(a, m.redirected, "go", {{"pathParams", json::object{{"scheme", "https"}, {"n", std::to_string(n)}}}, {"body", "{}"}})},
        };
        for (auto const& [path, r] : runs) {
            case_answers.push_back(r);
            ASSERT_EQ(r.status, 201) << path << ": " << r.body;
            EXPECT_EQ(str(r.json(), "status"), "Failed") << path << ": " << r.body;
            auto f = failure_of(a, r);
            answers.push_back(json::serialize(f));
            if (!f.is_object()) continue;
            EXPECT_EQ(str(f, "errorCode"), "egress_denied") << path << ": " << f;
            EXPECT_NE(str(f, "message").find("egress policy"), std::string::npos) << path << ": " << f;
        }
        // The health check, now and as a rotation's check: not Healthy, and a rotation refused.
        auto tested = a.post("/integrations/connections/" + m.by_key + "/test", json::object{});
        case_answers.push_back(tested);
        ASSERT_EQ(tested.status, 200) << tested.body;
        EXPECT_NE(str(tested.json(), "health"), "Healthy") << tested.body;
        EXPECT_NE(str(tested.json(), "healthReason").find("egress policy"), std::string::npos) << tested.body;
        auto rotated = a.post("/integrations/credentials/rotate", json::object{{"credentialId", m.key_credential}, {"secret", "api-key-2"}});
        case_answers.push_back(rotated);
        ASSERT_EQ(rotated.status, 422) << rotated.body;
        EXPECT_EQ(problem_type(rotated), "https://integration.dev/problems/verification-failed");
        EXPECT_NE(problem_detail(rotated).find("egress policy"), std::string::npos) << rotated.body;
        // Over https, a new connection's first health check, token and managed-identity token.
        auto fresh = provider_with(a, "https-" + std::to_string(n), "https://" + case_host(n) + ":" + port(vendor),
                                   {op("echo.send", "POST", "/echo/{id}")});
        for (auto const& [path, provider, credential] :
             std::vector<std::tuple<std::string, std::string, std::string>>{
                 {"health check", fresh, api_key_credential(a, fresh, "api-key-1")},
                 {"token", literal,
                  create_credential(a, {{"providerId", literal}, {"authMode", "OAuth2ClientCredentials"}, {"secret", client_secret},
                                        {"oauth2", json::object{{"tokenUrl", token_url(n, "https")}, {"clientId", "c1"},
                                                                {"scopes", json::array{}}}}})},
                 {"managed identity", literal,
                  create_credential(a, {{"providerId", literal}, {"authMode", "ManagedIdentity"},
                                        {"managedIdentity", json::object{{"endpointUrl", imds_url(n, "https")},
                                                                         {"resource", "https://vendor.test/"}}}})}}) {
            auto c = connect(a, provider, credential);
            case_answers.push_back(c);
            ASSERT_EQ(c.status, 201) << path << ": " << c.body;
            EXPECT_EQ(str(c.json(), "status"), "Pending") << path << ": " << c.body;
            EXPECT_NE(str(c.json(), "healthReason").find("egress policy"), std::string::npos) << path << ": " << c.body;
        }
        // The authorization-code exchange at the callback.
        auto started = a.post("/integrations/oauth2/authorize",
                              json::object{{"providerId", literal},
                                           {"oauth2", json::object{{"authorizeUrl", "http://127.0.0.1:" + port(idp) + "/authorize"},
                                                                   {"tokenUrl", token_url(n, "https")}, {"clientId", "c1"},
                                                                   {"clientSecret", client_secret}, {"scopes", json::array{}}}}});
        case_answers.push_back(started);
        ASSERT_EQ(started.status, 201) << started.body;
        auto exchanged = api(host.port(), "").get("/integrations/oauth2/callback?code=c1&state=" + str(started.json(), "state"));
        case_answers.push_back(exchanged);
        ASSERT_EQ(exchanged.status, 422) << exchanged.body;
        EXPECT_EQ(problem_type(exchanged), "https://integration.dev/problems/egress-denied");
        for (auto const& r : case_answers) {
            answers.push_back(r.body);
            if (address.size() > 4) {
                EXPECT_EQ(r.body.find(address), std::string::npos) << "a resolved address is revealed: " << r.body;
            }
        }
    }
    // No byte reached a stand-in: neither the refused loopback address nor the allowed one the
    // names also resolve to.
    EXPECT_EQ(vendor_inside.accepted() + idp_inside.accepted() + imds_inside.accepted(), 0);
    EXPECT_EQ(vendor_inside.bytes_received() + idp_inside.bytes_received() + imds_inside.bytes_received(), 0u);
    EXPECT_EQ(vendor.bytes_received(), vendor_seen);
    EXPECT_EQ(idp.bytes_received(), idp_seen);
    EXPECT_EQ(imds.bytes_received(), imds_seen);
    answers.push_back(host.log());
    for (auto const& text : answers) EXPECT_EQ(text.find(client_secret), std::string::npos) << text;
}

// The numeric-host, userinfo, fragment, encoding and scheme tricks of `egress-and-bad-input.md`,
// written into the URL of each outbound path: refused when stored, or when used; the listeners on
// 127.0.0.2 (what each trick means) and on 127.0.0.1 (what `0` and `[::]` reach) get nothing, not
// even a TLS hello (https, so that the rule "http only for allow-listed addresses" hides nothing).
TEST(host_outbound, literal_address_tricks_reach_nothing_on_any_outbound_path) {
    scratch_dir dir("tricks");
    auto key = create_key(dir.string(), "tenant-a");
    std::string const client_secret = "cs-TRICKS-never-leaves-1a2b";
    auto token_json = [](received_request const&) {
        return http_answer_bytes(200, "{\"access_token\":\"tok-1\",\"token_type\":\"Bearer\",\"expires_in\":\"3600\"}");
    };
    keep_alive_server target([](received_request const&) { return http_answer_bytes(200, "{}"); }, "127.0.0.2");
    keep_alive_server tokens(token_json, "127.0.0.2"), local_tokens(token_json, "127.0.0.1", tokens.port());
    keep_alive_server local_target([](received_request const&) { return http_answer_bytes(200, "{}"); }, "127.0.0.1", target.port());
    // {P}: the stand-in's port, {PATH}: the path of the call.
    std::vector<std::string> const tricks{
        "https://127.2:{P}{PATH}", "https://2130706434:{P}{PATH}", "https://0x7f000002:{P}{PATH}",
        "https://0177.0.0.2:{P}{PATH}", "https://017700000002:{P}{PATH}", "https://0x7f.0.0.2:{P}{PATH}",
        "https://127.000.000.002:{P}{PATH}", "https://[::ffff:127.0.0.2]:{P}{PATH}", "https://[::ffff:7f00:2]:{P}{PATH}",
        "https://[::FFFF:7F00:2]:{P}{PATH}", "https://[0:0:0:0:0:0:0:1]:{P}{PATH}", "https://[::]:{P}{PATH}",
        "https://0:{P}{PATH}", "https://evil.example@127.0.0.2:{P}{PATH}", "https://127.0.0.2:{P}{PATH}#@evil.example/",
        "https://127.0.0.%32:{P}{PATH}", "https://127.0.0.2.:{P}{PATH}", "HTTPS://127.0.0.2:{P}{PATH}",
        "http://127.0.0.2:{P}{PATH}",
        "gopher://127.0.0.2:{P}/_GET%20/", "dict://127.0.0.2:{P}/info", "ftp://127.0.0.2:{P}/x", "file:///etc/passwd",
    };
    auto url = [](std::string t, keep_alive_server const& s, std::string const& path) {
        for (auto [from, to] : {std::pair<std::string, std::string>{"{P}", std::to_string(s.port())}, {"{PATH}", path}})
            if (auto at = t.find(from); at != std::string::npos) t.replace(at, from.size(), to);
        return t;
    };
    // An allowed vendor whose answer redirects to the trick.
    std::string redirect_to;
    std::mutex redirect_mutex;
    keep_alive_server redirector([&](received_request const& r) {
        if (r.target == "/health") return http_answer_bytes(200, "{}");
        std::lock_guard lock(redirect_mutex);
        return http_answer_bytes(302, "{}", "Location: " + redirect_to + "\r\n");
    });
    host_process host(dir.string(), {"--egress-allow", "127.0.0.1/32", "--key-rate-limit", "0", "--max-redirects", "3",
                                     "--managed-identity-tenant", "tenant-a"});
    api a(host.port(), key);
    auto literal = provider_with(a, "literal", "http://127.0.0.1:" + std::to_string(redirector.port()), {op("go", "POST", "/go")});
    auto refused_status = [](http_answer const& r) { return r.status == 400 || r.status == 422; };
    std::vector<std::string> answers;
    for (std::size_t i = 0; i < tricks.size(); ++i) {
        SCOPED_TRACE(tricks[i]);
        // A provider's base URL (its health check and runs): refused when registered.
        auto p = a.post("/integrations/providers",
                        json::object{{"key", "trick-" + std::to_string(i)}, {"displayName", "t"}, {"category", "BusinessSystem"},
                                     {"authModel", "ApiKey"}, {"baseUrl", url(tricks[i], target, "")}, {"capabilities", json::array{"go"}}});
        answers.push_back(p.body);
        EXPECT_TRUE(refused_status(p)) << p.body;
        // A token URL or a managed-identity endpoint: refused when stored, or the first
        // connection made with it stays Pending.
        for (auto const& body :
             {json::object{{"providerId", literal}, {"authMode", "OAuth2ClientCredentials"}, {"secret", client_secret},
                           {"oauth2", json::object{{"tokenUrl", url(tricks[i], tokens, "/token")}, {"clientId", "c1"}, {"scopes", json::array{}}}}},
              json::object{{"providerId", literal}, {"authMode", "ManagedIdentity"},
                           {"managedIdentity", json::object{{"endpointUrl", url(tricks[i], tokens, "/metadata/identity/oauth2/token")},
                                                            {"resource", "https://x.test/"}}}}}) {
            auto cred = a.post("/integrations/credentials", body);
            answers.push_back(cred.body);
            if (cred.status != 201) {
                EXPECT_TRUE(refused_status(cred)) << cred.body;
                continue;
            }
            auto c = connect(a, literal, str(cred.json(), "credentialId"));
            answers.push_back(c.body);
            EXPECT_EQ(str(c.json(), "status"), "Pending") << c.body;
        }
        // An authorization-code token URL: refused at the start, or at the exchange.
        auto started = a.post("/integrations/oauth2/authorize",
                              json::object{{"providerId", literal},
                                           {"oauth2", json::object{{"authorizeUrl", "https://idp.example/authorize"},
                                                                   {"tokenUrl", url(tricks[i], tokens, "/token")}, {"clientId", "c1"},
                                                                   {"clientSecret", client_secret}, {"scopes", json::array{}}}}});
        answers.push_back(started.body);
        if (started.status == 201) {
            auto exchanged = api(host.port(), "").get("/integrations/oauth2/callback?code=c1&state=" + str(started.json(), "state"));
            answers.push_back(exchanged.body);
            EXPECT_TRUE(refused_status(exchanged)) << exchanged.body;
        } else {
            EXPECT_TRUE(refused_status(started)) << started.body;
        }
        // A redirect a run follows: the run fails.
        {
            std::lock_guard lock(redirect_mutex);
            redirect_to = url(tricks[i], target, "/landing");
        }
        auto r = run(a, active_connection(a, literal, api_key_credential(a, literal, "api-key-r")), "go", {{"body", "{}"}});
        answers.push_back(r.body);
        ASSERT_EQ(r.status, 201) << r.body;
        EXPECT_EQ(str(r.json(), "status"), "Failed") << r.body;
    }
    EXPECT_EQ(target.accepted() + tokens.accepted() + local_target.accepted() + local_tokens.accepted(), 0);
    EXPECT_EQ(target.bytes_received() + tokens.bytes_received() + local_target.bytes_received() + local_tokens.bytes_received(), 0u);
    answers.push_back(host.log());
    for (auto const& text : answers) EXPECT_EQ(text.find(client_secret), std::string::npos) << text;
}

// The walkthrough's set-up: the operator allow-lists 127.0.0.1 for a vendor beside the host, and
// the host listens on 127.0.0.1 too. Its own listener stays refused (a tenant must not make it
// call its own API with a key it was given), while the vendor on another port is reachable.
TEST(host_outbound, the_host_never_calls_its_own_listener_even_when_its_address_is_allow_listed) {
    scratch_dir dir("self");
    auto key = create_key(dir.string(), "tenant-a");
    std::string redirect_to;
    std::mutex redirect_mutex;
    keep_alive_server vendor([&](received_request const& r) {
        if (r.target != "/go") return http_answer_bytes(200, "{}");
        std::lock_guard lock(redirect_mutex);
        return http_answer_bytes(302, "{}", "Location: " + redirect_to + "\r\n");
    });
    host_process host(dir.string(), {"--egress-allow", "127.0.0.1/32", "--key-rate-limit", "0", "--max-redirects", "3",
                                     "--managed-identity-tenant", "tenant-a"});
    api a(host.port(), key);
    auto self = "http://127.0.0.1:" + std::to_string(host.port());
    auto own = a.post("/integrations/providers",
                      json::object{{"key", "self"}, {"displayName", "t"}, {"category", "BusinessSystem"}, {"authModel", "ApiKey"},
                                   {"baseUrl", self}, {"capabilities", json::array{"go"}}});
    EXPECT_TRUE(own.status == 400 || own.status == 422) << own.body;
    EXPECT_NE(own.body.find("own listening socket"), std::string::npos) << own.body;
    auto sub = a.post("/webhooks/subscriptions", json::object{{"projectId", "p"}, {"eventType", "order.*"},
                                                             {"endpointUrl", self + "/integrations/providers"}});
    EXPECT_TRUE(sub.status == 400 || sub.status == 422) << sub.body;

    auto beside = provider_with(a, "beside", "http://127.0.0.1:" + std::to_string(vendor.port()), {op("go", "POST", "/go")});
    auto connection = active_connection(a, beside, api_key_credential(a, beside, "api-key-self"));
    for (auto const& target : {self + "/integrations/providers", "http://127.1:" + std::to_string(host.port()) + "/healthz"}) {
        {
            std::lock_guard lock(redirect_mutex);
            redirect_to = target;
        }
        auto r = run(a, connection, "go", {{"body", "{}"}});
        ASSERT_EQ(r.status, 201) << r.body;
        EXPECT_EQ(str(r.json(), "status"), "Failed") << r.body;
        EXPECT_EQ(str(failure_of(a, r), "errorCode"), "egress_denied") << target;
    }
    // Nothing reached the host but the test's own requests: no run called /healthz or the API.
    EXPECT_EQ(host.log().find("\"path\":\"/healthz\""), std::string::npos);
}

TEST(host_outbound, a_malformed_hosts_file_stops_the_host_with_its_line) {
    scratch_dir dir("hosts-file");
    auto path = (dir.path() / "hosts").string();
    std::ofstream(path) << "127.0.0.1 fine.test\nnot-an-address name.test\n";
    auto out = run_and_capture("timeout 10 " + std::string(INTEGRATION_HOST_BIN) + " serve --data " + dir.string() +
                               " --listen 127.0.0.1:0 --hosts-file " + path + " 2>&1");
    EXPECT_NE(out.find(path + ":2"), std::string::npos) << out;
    EXPECT_EQ(out.find("listening"), std::string::npos) << out;
}

}  // namespace
}  // namespace integration::testing
