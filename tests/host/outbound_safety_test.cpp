// Outbound request safety through the real integration-host binary: what a tenant puts in a run
// cannot frame or route the vendor request, leave the operation's path, or reach an address the
// egress policy refuses (through tokens, managed identity, health checks or runs), and what a
// vendor echoes back never stores a secret.

#include "host/host_process.hpp"
#include "host/http_client.hpp"
#include "support/keep_alive_server.hpp"

#include <gtest/gtest.h>

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace integration::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

std::string str(json::value const& v, char const* name) { return std::string(v.at(name).as_string()); }

std::string problem_type(http_answer const& a) { return str(a.json(), "type"); }
std::string problem_detail(http_answer const& a) { return str(a.json(), "detail"); }

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

constexpr char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64(std::string_view in, bool url = false) {
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        unsigned v = static_cast<unsigned char>(in[i]) << 16 | static_cast<unsigned char>(in[i + 1]) << 8 | static_cast<unsigned char>(in[i + 2]);
        for (int s = 18; s >= 0; s -= 6) out += b64_alphabet[(v >> s) & 63];
    }
    if (i < in.size()) {
        unsigned v = static_cast<unsigned char>(in[i]) << 16 | (i + 1 < in.size() ? static_cast<unsigned char>(in[i + 1]) << 8 : 0);
        out += b64_alphabet[(v >> 18) & 63];
        out += b64_alphabet[(v >> 12) & 63];
        out += i + 1 < in.size() ? b64_alphabet[(v >> 6) & 63] : '=';
        out += '=';
    }
    if (url) {
        for (auto& c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
        while (!out.empty() && out.back() == '=') out.pop_back();
    }
    return out;
}

/** Decodes base64 or base64url, skipping anything else (a redaction marker garbles the rest). */
std::string unbase64(std::string_view in) {
    std::string out;
    unsigned v = 0;
    int bits = 0;
    for (char c : in) {
        int d = c == '-' ? 62 : c == '_' ? 63 : -1;
        if (auto const* p = std::strchr(b64_alphabet, c); c != '\0' && p) d = static_cast<int>(p - b64_alphabet);
        if (d < 0) continue;
        v = (v << 6) | static_cast<unsigned>(d);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((v >> bits) & 0xff);
        }
    }
    return out;
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

/** A provider with one Active client of `operations` (capabilities are their names); `extra`
 *  adds fields to the provider. */
std::string provider_with(api const& a, std::string const& key, std::string const& base_url, json::array operations,
                          json::object extra = {}) {
    json::array caps;
    for (auto const& op : operations) caps.push_back(op.at("operation"));
    json::object body{{"key", key}, {"displayName", key}, {"category", "BusinessSystem"}, {"authModel", "ApiKey"},
                      {"baseUrl", base_url}, {"capabilities", caps},
                      {"healthCheck", json::object{{"method", "GET"}, {"path", "/health"}, {"expectStatus", 200}}}};
    for (auto const& [k, v] : extra) body[k] = v;
    auto p = a.post("/integrations/providers", body);
    EXPECT_EQ(p.status, 201) << p.body;
    auto id = str(p.json(), "providerId");
    auto c = a.post("/integrations/providers/" + id + "/clients",
                    json::object{{"assemblyName", key + ".Client"}, {"version", "1.0.0"}, {"capabilities", caps},
                                 {"authMode", "ApiKey"}, {"operations", operations}});
    EXPECT_EQ(c.status, 201) << c.body;
    auto act = a.post("/integrations/providers/" + id + "/activate", json::object{});
    EXPECT_EQ(act.status, 200) << act.body;
    return id;
}

json::object op(std::string const& name, std::string const& method, std::string const& path) {
    return {{"operation", name}, {"method", method}, {"path", path}};
}

std::string create_credential(api const& a, json::object body) {
    auto cred = a.post("/integrations/credentials", body);
    EXPECT_EQ(cred.status, 201) << cred.body;
    return cred.status == 201 ? str(cred.json(), "credentialId") : std::string();
}

std::string api_key_credential(api const& a, std::string const& provider, std::string const& secret) {
    return create_credential(a, {{"providerId", provider}, {"authMode", "ApiKey"}, {"secret", secret},
                                 {"apiKey", json::object{{"in", "header"}, {"name", "X-Api-Key"}}}});
}

/** Creates a connection (probed at once); returns the answer. */
http_answer connect(api const& a, std::string const& provider, std::string const& credential) {
    return a.post("/integrations/connections", json::object{{"projectId", "p"}, {"providerId", provider},
                                                             {"displayName", "c"}, {"credentialId", credential}});
}

std::string active_connection(api const& a, std::string const& provider, std::string const& credential) {
    auto c = connect(a, provider, credential);
    EXPECT_EQ(c.status, 201) << c.body;
    EXPECT_EQ(str(c.json(), "status"), "Active") << c.body;
    return str(c.json(), "connectionId");
}

http_answer run(api const& a, std::string const& connection, std::string const& operation, json::object input) {
    return a.post("/integrations/runs", json::object{{"connectionId", connection}, {"operation", operation}, {"input", input}});
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
        {op("echo.send", "POST", "/echo/{id}"), op("echo.other", "POST", "/other")},
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

    for (std::string value : {".", ".."}) {
        auto r = run(a, conn, "files.get", {{"pathParams", json::object{{"name", value}}}});
        EXPECT_EQ(r.status, 400) << value << ": " << r.body;
        if (r.status == 400) {
            EXPECT_NE(problem_detail(r).find("pathParams.name"), std::string::npos) << r.body;
        }
    }
    std::vector<std::string> const accepted{"%2e%2e", "%2E%2E", ".%2e", "%2e.", "..%2f..", "../secret", "..\\secret",
                                            "%5c..%5csecret", "a/../../secret", "/", "%2f", "...", "..;", " ..", "?x=1#y"};
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

/** A hosts file mapping the test names to `address`. */
std::string hosts_file(scratch_dir const& dir, std::string const& name, std::string const& address) {
    auto path = (dir.path() / name).string();
    std::ofstream(path) << "# test names\n" << address << " vendor.test idp.test\n" << address << "\tIMDS.test.   # upper case, trailing dot\n";
    return path;
}

TEST(host_outbound, tokens_managed_identity_health_checks_and_runs_never_reach_a_refused_address) {
    scratch_dir dir("egress");
    auto key = create_key(dir.string(), "tenant-a");
    std::string const client_secret = "cs-EGRESS-never-leaves-9f8e7d";
    auto token_json = [](received_request const&) {
        return http_answer_bytes(200, "{\"access_token\":\"tok-1\",\"token_type\":\"Bearer\",\"expires_in\":\"3600\"}");
    };
    auto ok = [](received_request const&) { return http_answer_bytes(200, "{}"); };
    // Allowed stand-ins on 127.0.0.1 while the names point there; refused stand-ins on 127.0.0.2,
    // outside --egress-allow 127.0.0.1/32, on the same ports, for when the names move there.
    keep_alive_server vendor(ok), idp(token_json), imds(token_json);
    keep_alive_server vendor_inside(ok, "127.0.0.2", vendor.port());
    keep_alive_server idp_inside(token_json, "127.0.0.2", idp.port());
    keep_alive_server imds_inside(token_json, "127.0.0.2", imds.port());
    auto port = [](keep_alive_server const& s) { return std::to_string(s.port()); };
    std::string const token_url = "http://idp.test:" + port(idp) + "/token";
    std::string const imds_url = "http://imds.test:" + port(imds) + "/metadata/identity/oauth2/token?api-version=2018-02-01";

    std::vector<std::string> answers;
    std::string provider, by_key, by_token, by_identity;
    {
        host_process host(dir.string(), {"--egress-allow", "127.0.0.1/32", "--hosts-file", hosts_file(dir, "hosts-1", "127.0.0.1")});
        api a(host.port(), key);
        provider = provider_with(a, "named", "http://vendor.test:" + port(vendor), {op("echo.send", "POST", "/echo/{id}")});
        by_key = active_connection(a, provider, api_key_credential(a, provider, "api-key-1"));
        auto oauth = create_credential(a, {{"providerId", provider}, {"authMode", "OAuth2ClientCredentials"}, {"secret", client_secret},
                                           {"oauth2", json::object{{"tokenUrl", token_url}, {"clientId", "c1"}, {"scopes", json::array{}}}}});
        by_token = active_connection(a, provider, oauth);
        auto identity = create_credential(a, {{"providerId", provider}, {"authMode", "ManagedIdentity"},
                                              {"managedIdentity", json::object{{"endpointUrl", imds_url}, {"resource", "https://vendor.test/"}}}});
        by_identity = active_connection(a, provider, identity);
        EXPECT_EQ(idp.requests().size(), 1u);
        EXPECT_EQ(imds.requests().size(), 1u);
    }
    // The names now resolve to an address the policy refuses, as a rebinding DNS answer would.
    host_process host(dir.string(), {"--egress-allow", "127.0.0.1/32", "--hosts-file", hosts_file(dir, "hosts-2", "127.0.0.2")});
    api a(host.port(), key);
    for (auto const& conn : {by_key, by_token, by_identity}) {
        auto r = run(a, conn, "echo.send", {{"pathParams", json::object{{"id", "1"}}}, {"body", "{}"}});
        answers.push_back(r.body);
        ASSERT_EQ(r.status, 201) << r.body;
        EXPECT_EQ(str(r.json(), "status"), "Failed") << r.body;
        auto failures = a.get("/integrations/failures?runId=" + str(r.json(), "runId"));
        answers.push_back(failures.body);
        auto const listed = failures.json();
        ASSERT_EQ(listed.at("items").as_array().size(), 1u) << failures.body;
        auto const& f = listed.at("items").at(0);
        EXPECT_EQ(str(f, "errorCode"), "egress_denied") << failures.body;
        EXPECT_NE(str(f, "message").find("egress policy"), std::string::npos) << failures.body;
    }
    // The health check of an Active connection, and a new connection's first probe, whose token
    // endpoint (on an allowed provider) and identity endpoint are refused.
    auto tested = a.post("/integrations/connections/" + by_key + "/test", json::object{});
    answers.push_back(tested.body);
    ASSERT_EQ(tested.status, 200) << tested.body;
    EXPECT_NE(str(tested.json(), "health"), "Healthy") << tested.body;
    auto literal = provider_with(a, "literal", "http://127.0.0.1:" + port(vendor), {op("echo.send", "POST", "/echo/{id}")});
    auto oauth = create_credential(a, {{"providerId", literal}, {"authMode", "OAuth2ClientCredentials"}, {"secret", client_secret},
                                       {"oauth2", json::object{{"tokenUrl", token_url}, {"clientId", "c1"}, {"scopes", json::array{}}}}});
    auto identity = create_credential(a, {{"providerId", literal}, {"authMode", "ManagedIdentity"},
                                          {"managedIdentity", json::object{{"endpointUrl", imds_url}, {"resource", "https://x.test/"}}}});
    for (auto const& cred : {oauth, identity}) {
        auto c = connect(a, literal, cred);
        answers.push_back(c.body);
        ASSERT_EQ(c.status, 201) << c.body;
        EXPECT_EQ(str(c.json(), "status"), "Pending") << c.body;
    }
    // A literal refused address as the token URL: refused when it is used, if not when it is stored.
    auto direct = a.post("/integrations/credentials",
                         json::object{{"providerId", literal}, {"authMode", "OAuth2ClientCredentials"}, {"secret", client_secret},
                                      {"oauth2", json::object{{"tokenUrl", "http://127.0.0.2:" + port(idp) + "/token"},
                                                              {"clientId", "c1"}, {"scopes", json::array{}}}}});
    if (direct.status == 201) {
        auto c = connect(a, literal, str(direct.json(), "credentialId"));
        EXPECT_EQ(c.body.find(client_secret), std::string::npos) << c.body;
        EXPECT_EQ(str(c.json(), "status"), "Pending") << c.body;
    } else {
        EXPECT_EQ(direct.status, 422) << direct.body;
    }

    EXPECT_EQ(vendor_inside.accepted() + idp_inside.accepted() + imds_inside.accepted(), 0);
    EXPECT_EQ(vendor_inside.bytes_received() + idp_inside.bytes_received() + imds_inside.bytes_received(), 0u);
    answers.push_back(host.log());
    for (auto const& text : answers) {
        EXPECT_EQ(text.find(client_secret), std::string::npos) << text;
        EXPECT_EQ(text.find("127.0.0.2"), std::string::npos) << "a resolved address is never revealed: " << text;
    }
    EXPECT_EQ(direct.body.find(client_secret), std::string::npos) << direct.body;
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
