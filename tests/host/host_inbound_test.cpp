// Inbound webhooks through the real integration-host: requests signed at test time by the vendors'
// own npm libraries (tests/peers/sign_inbound.mjs: @octokit/webhooks-methods, stripe, twilio,
// standardwebhooks, svix) posted over a socket to POST /webhooks/inbound/{connectionId}, and every
// inbound case of egress-and-bad-input.md on that route.

#include "host/api_steps.hpp"
#include "host/host_process.hpp"
#include "support/base64.hpp"
#include "support/hmac.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace integration::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

// What the host is told the vendors call (Twilio signs it), behind an imagined proxy.
constexpr char const* public_url = "https://hooks.example.test";
constexpr char const* problems = "https://integration.dev/problems/";

std::int64_t now_unix() { return static_cast<std::int64_t>(std::time(nullptr)); }

/** One request for sign_inbound.mjs. */
json::object to_sign(std::string const& scheme, std::string const& secret, std::string const& body) {
    return {{"scheme", scheme}, {"secret", secret}, {"body", body}};
}

/** The header fields the vendors' libraries produce for each of `requests`. */
std::vector<json::object> sign_all(json::array const& requests) {
    auto input = std::filesystem::temp_directory_path() / ("sign-inbound-" + std::to_string(::getpid()) + ".json");
    std::ofstream(input) << json::serialize(requests);
    auto out = run_and_capture("node " + std::string(INTEGRATION_PEERS_DIR) + "/sign_inbound.mjs < " + input.string());
    std::filesystem::remove(input);
    std::vector<json::object> headers;
    auto parsed = json::parse(out);
    for (auto const& h : parsed.as_array()) headers.push_back(h.as_object());
    if (headers.size() != requests.size()) throw std::runtime_error("sign_inbound.mjs said: " + out);
    return headers;
}
json::object sign(json::object request) { return sign_all({std::move(request)}).front(); }

std::string field(json::object const& headers, std::string const& name) { return std::string(headers.at(name).as_string()); }

/** The bytes of a vendor's POST: its header fields, then a Content-Length body. */
std::string vendor_post(std::string const& target, json::object const& headers, std::string const& body,
                        std::string const& extra = "") {
    std::string req = "POST " + target + " HTTP/1.1\r\nHost: hooks.example.test\r\nConnection: close\r\n";
    if (!headers.contains("Content-Type")) req += "Content-Type: application/json\r\n";
    for (auto const& [k, v] : headers) req += std::string(k) + ": " + std::string(v.as_string()) + "\r\n";
    return req + extra + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

/** One character of `s` at `at` replaced by another of the same alphabet (hex and base64 both
 *  hold `a` and `b`), so the value stays well formed and only its bytes differ. */
std::string one_char_changed(std::string s, std::size_t at) {
    s[at] = s[at] == 'a' ? 'b' : 'a';
    return s;
}

/** A series' value in the Prometheus exposition, or -1. */
double metric(std::string const& text, std::string const& series) {
    auto at = text.find("\n" + series + " ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + 1 + series.size() + 1));
}

// Secrets as each vendor issues them. Standard Webhooks / Svix: whsec_ + base64 of 24-64 bytes.
std::string const github_secret = "gh-inbound-secret-7f3a";
std::string const stripe_secret = "whsec_stripe_inbound_5c1e";
std::string const twilio_token = "twilio-auth-token-91b2";
std::string const standard_secret = "whsec_" + base64("standard-webhooks-key-0123456789ab");

struct scheme_case {
    std::string name;     // sign_inbound.mjs's scheme
    std::string scheme;   // the registration's (svix registers as standard)
    std::string secret;
    std::string body;
    std::string event_type;  // the canonical type the gateway derives
};

std::vector<scheme_case> scheme_cases(std::string const& tag);

/** The case of sign_inbound.mjs's `name`, its body made unique by `tag`. */
scheme_case case_of(std::string const& name, std::string const& tag) {
    for (auto& c : scheme_cases(tag))
        if (c.name == name) return c;
    throw std::invalid_argument(name);
}

std::vector<scheme_case> scheme_cases(std::string const& tag) {
    return {
        {"github", "github", github_secret, R"({"action":"opened","number":)" + tag + R"(,"pull_request":{"title":"x"}})",
         "github.pull_request.opened"},
        {"stripe", "stripe", stripe_secret,
         R"({"id":"evt_)" + tag + R"(","object":"event","type":"charge.succeeded","data":{"object":{"amount":100}}})",
         "stripe.charge.succeeded"},
        {"twilio", "twilio", twilio_token, "MessageSid=SM" + tag + "&From=%2B15550100&To=%2B15550199&Body=hello+there",
         "twilio.sms.received"},
        {"standard", "standard", standard_secret, R"({"type":"invoice.paid","data":{"n":)" + tag + "}}",
         "standard.invoice.paid"},
        {"svix", "standard", standard_secret, R"({"type":"invoice.paid","data":{"svix":)" + tag + "}}",
         "standard.invoice.paid"},
    };
}

class host_inbound : public ::testing::Test {
protected:
    void SetUp() override {
        key_a_ = create_key(dir_.string(), "tenant-a");
        key_b_ = create_key(dir_.string(), "tenant-b");
        ops_ = create_key(dir_.string(), "ops", true);
        // A short header deadline so the slow-client case ends within the test's bounds.
        host_ = std::make_unique<host_process>(
            dir_.string(), std::vector<std::string>{"--key-rate-limit", "0", "--public-url", public_url,
                                                    "--header-timeout-ms", "2000", "--read-timeout-ms", "4000"});
        provider_ = provider_with(a(), "vendor", "http://127.0.0.1:9", {op("x.send", "POST", "/x")});
        credential_ = api_key_credential(a(), provider_, "vendor-api-key");
    }
    api a() const { return api(host_->port(), key_a_); }
    api b() const { return api(host_->port(), key_b_); }
    api ops() const { return api(host_->port(), ops_); }

    /** A connection of tenant A with an inbound registration; its id. */
    std::string connection(std::string const& scheme, std::string const& secret) {
        auto c = connect(a(), provider_, credential_);
        EXPECT_EQ(c.status, 201) << c.body;
        auto id = str(c.json(), "connectionId");
        auto reg = a().post("/integrations/connections/" + id + "/inbound-webhook", json::object{{"scheme", scheme}, {"secret", secret}});
        EXPECT_EQ(reg.status, 200) << reg.body;
        EXPECT_EQ(str(reg.json(), "inboundUrl"), std::string(public_url) + "/webhooks/inbound/" + id) << reg.body;
        EXPECT_EQ(reg.body.find(secret), std::string::npos) << "the secret came back";
        return id;
    }
    static std::string target(std::string const& connection_id) { return "/webhooks/inbound/" + connection_id; }

    http_answer post(std::string const& target, json::object const& headers, std::string const& body, std::string const& extra = "") {
        return parse_answer(raw_exchange(host_->port(), vendor_post(target, headers, body, extra)));
    }
    /** The inbound deliveries of `connection_id` as tenant A lists them. */
    json::array deliveries(std::string const& connection_id, api const& as) const {
        auto r = as.get("/webhooks/deliveries?direction=Inbound&connectionId=" + connection_id);
        EXPECT_EQ(r.status, 200) << r.body;
        return r.status == 200 ? r.json().at("items").as_array() : json::array{};
    }
    json::array deliveries(std::string const& connection_id) const { return deliveries(connection_id, a()); }
    std::size_t accepted(std::string const& connection_id) const {
        std::size_t n = 0;
        for (auto const& d : deliveries(connection_id)) n += str(d, "status") == "Accepted";
        return n;
    }

    /** Signs `s` (and, for Twilio, the URL `target` is reached at) with the vendor's library. */
    json::object signed_headers(scheme_case const& s, std::string const& tgt, std::string const& id) {
        auto req = to_sign(s.name, s.secret, s.body);
        req["url"] = std::string(public_url) + tgt;
        req["id"] = id;
        return sign(std::move(req));
    }

    scratch_dir dir_{"inbound"};
    std::string key_a_, key_b_, ops_;
    std::unique_ptr<host_process> host_;
    std::string provider_, credential_;
};

// Done means: requests signed by the vendors' own libraries are accepted (202), the same request
// again is a duplicate (200, the same delivery), and one Accepted delivery is listed.
TEST_F(host_inbound, requests_signed_by_the_vendors_libraries_are_accepted_once_and_acknowledged_again) {
    for (auto const& s : scheme_cases("101")) {
        SCOPED_TRACE(s.name);
        auto id = connection(s.scheme, s.secret);
        auto tgt = target(id) + (s.name == "twilio" ? "?source=sms" : "");
        auto headers = signed_headers(s, tgt, "delivery-" + s.name + "-1");
        auto first = post(tgt, headers, s.body);
        ASSERT_EQ(first.status, 202) << first.body;
        EXPECT_EQ(str(first.json(), "outcome"), "accepted");
        EXPECT_EQ(str(first.json(), "eventType"), s.event_type) << first.body;
        auto again = post(tgt, headers, s.body);
        EXPECT_EQ(again.status, 200) << again.body;
        EXPECT_EQ(str(again.json(), "outcome"), "duplicate");
        EXPECT_EQ(str(again.json(), "deliveryId"), str(first.json(), "deliveryId"));

        auto listed = deliveries(id);
        ASSERT_EQ(listed.size(), 1u) << json::serialize(listed);
        EXPECT_EQ(str(listed[0], "deliveryId"), str(first.json(), "deliveryId"));
        EXPECT_EQ(str(listed[0], "direction"), "Inbound");
        EXPECT_EQ(str(listed[0], "status"), "Accepted");
        EXPECT_EQ(str(listed[0], "connectionId"), id);
        // Another tenant sees none of it.
        EXPECT_TRUE(deliveries(id, b()).empty());
        EXPECT_EQ(b().get("/webhooks/deliveries/" + str(first.json(), "deliveryId")).status, 404);
    }
}

// Twilio signs webhooks of a SharedKey with HMAC-SHA256 and says so in a settings header: signed
// by the twilio library, one is accepted; without the header (read as the Auth Token's HMAC-SHA1)
// or with one byte of its signature changed, refused.
TEST_F(host_inbound, a_twilio_webhook_signed_with_a_shared_key_is_accepted) {
    auto s = case_of("twilio", "sk1");
    auto id = connection("twilio", twilio_token);
    auto tgt = target(id) + "?source=sms";
    auto req = to_sign("twilio-sharedkey", twilio_token, s.body);
    req["url"] = std::string(public_url) + tgt;
    auto headers = sign(std::move(req));
    auto without = headers;
    without.erase("X-Twilio-Webhooks-Signature-Settings");
    auto refused = post(tgt, without, s.body);
    EXPECT_EQ(refused.status, 401) << refused.body;
    auto forged = headers;
    auto sig = field(forged, "X-Twilio-Signature");
    sig[3] = sig[3] == 'a' ? 'b' : 'a';
    forged["X-Twilio-Signature"] = sig;
    EXPECT_EQ(post(tgt, forged, s.body).status, 401);
    auto first = post(tgt, headers, s.body);
    ASSERT_EQ(first.status, 202) << first.body;
    EXPECT_EQ(str(first.json(), "eventType"), "twilio.sms.received") << first.body;
    EXPECT_EQ(accepted(id), 1u);
}

// Slack's Events API: saving the request URL sends a signed url_verification whose challenge the
// answer must echo (Slack refuses the URL otherwise), and a retry is signed anew with a later
// timestamp but carries the same event_id, so it is the same delivery. (Slack's scheme is
// HMAC-SHA256 over "v0:{timestamp}:{body}"; no npm peer signs it, so the test does.)
TEST_F(host_inbound, slack_gets_its_challenge_echoed_and_a_retried_event_is_one_delivery) {
    std::string const secret = "8f742231b10e8888abcd99yyyzzz85a5";
    auto id = connection("slack", secret);
    auto slack = [&](std::string const& body, std::int64_t ts, std::string const& extra = "") {
        auto t = std::to_string(ts);
        json::object h{{"X-Slack-Request-Timestamp", t}, {"X-Slack-Signature", "v0=" + hmac_sha256_hex(secret, "v0:" + t + ":" + body)}};
        return post(target(id), h, body, extra);
    };
    std::string const challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P";
    auto handshake = slack(R"({"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":")" + challenge + R"(","type":"url_verification"})",
                           now_unix());
    ASSERT_EQ(handshake.status, 200) << handshake.body;
    EXPECT_EQ(handshake.json(), (json::value{{"challenge", challenge}})) << handshake.body;
    EXPECT_TRUE(deliveries(id).empty()) << "a handshake is stored nowhere";
    // Unsigned, it is refused like any other request.
    auto unsigned_handshake = post(target(id), json::object{{"X-Slack-Request-Timestamp", std::to_string(now_unix())},
                                                            {"X-Slack-Signature", "v0=" + std::string(64, 'a')}},
                                   R"({"challenge":"x","type":"url_verification"})");
    EXPECT_EQ(unsigned_handshake.status, 401) << unsigned_handshake.body;

    std::string const event = R"({"type":"event_callback","event_id":"Ev08MFMKH6","event":{"type":"app_mention","text":"hi"}})";
    auto first = slack(event, now_unix() - 5);
    ASSERT_EQ(first.status, 202) << first.body;
    EXPECT_EQ(str(first.json(), "providerDeliveryId"), "Ev08MFMKH6");
    auto retry = slack(event, now_unix(), "X-Slack-Retry-Num: 1\r\nX-Slack-Retry-Reason: http_timeout\r\n");
    ASSERT_EQ(retry.status, 200) << retry.body;
    EXPECT_EQ(str(retry.json(), "outcome"), "duplicate");
    EXPECT_EQ(str(retry.json(), "deliveryId"), str(first.json(), "deliveryId"));
    EXPECT_EQ(accepted(id), 1u);
}

// Done means: a one-byte change to body, signature, timestamp or URL (where the scheme signs it)
// is 401, and nothing is accepted.
TEST_F(host_inbound, a_one_byte_change_to_body_signature_timestamp_or_url_is_401) {
    for (auto const& s : scheme_cases("202")) {
        SCOPED_TRACE(s.name);
        auto id = connection(s.scheme, s.secret);
        auto tgt = target(id) + (s.name == "twilio" ? "?source=sms" : "");
        auto headers = signed_headers(s, tgt, "delivery-" + s.name + "-2");
        struct variant {
            std::string what;
            std::string target;
            json::object headers;
            std::string body;
        };
        std::vector<variant> variants;
        auto body = s.body;
        body[body.size() / 2] = static_cast<char>(body[body.size() / 2] ^ 1);
        variants.push_back({"body", tgt, headers, body});
        // The signature: a character in the middle of its value.
        std::string sig_field = s.name == "github"   ? "X-Hub-Signature-256"
                                : s.name == "stripe" ? "Stripe-Signature"
                                : s.name == "twilio" ? "X-Twilio-Signature"
                                : s.name == "svix"   ? "svix-signature"
                                                     : "webhook-signature";
        auto sig = field(headers, sig_field);
        auto value_at = s.name == "github" ? sig.find('=') + 1 : s.name == "stripe" ? sig.find("v1=") + 3 : s.name == "twilio" ? 0 : sig.find(',') + 1;
        auto tampered = headers;
        tampered[sig_field] = one_char_changed(sig, value_at + 10);
        variants.push_back({"signature", tgt, tampered, s.body});
        if (s.name == "stripe") {
            auto t = std::stoll(sig.substr(2, sig.find(',') - 2));
            auto moved = headers;
            moved[sig_field] = "t=" + std::to_string(t + 1) + sig.substr(sig.find(','));
            variants.push_back({"timestamp", tgt, moved, s.body});
        } else if (s.name == "standard" || s.name == "svix") {
            auto name = s.name == "svix" ? "svix-timestamp" : "webhook-timestamp";
            auto moved = headers;
            moved[name] = std::to_string(std::stoll(field(headers, name)) + 1);
            variants.push_back({"timestamp", tgt, moved, s.body});
        } else if (s.name == "twilio") {
            variants.push_back({"url", target(id) + "?source=smt", headers, s.body});
        }
        for (auto const& v : variants) {
            auto r = post(v.target, v.headers, v.body);
            EXPECT_EQ(r.status, 401) << v.what << ": " << r.body;
            EXPECT_EQ(r.headers["content-type"], "application/problem+json") << v.what;
            EXPECT_EQ(problem_type(r), std::string(problems) + "signature-mismatch") << v.what << ": " << r.body;
        }
        // Untouched, it still verifies: the refusals were about the changed byte.
        EXPECT_EQ(post(tgt, headers, s.body).status, 202);
        EXPECT_EQ(accepted(id), 1u);
    }
}

// egress-and-bad-input.md: timestamps 301 s too old or too new are refused; 299 s is accepted.
// The four are signed at the start of a second and sent at once, so they arrive within it.
TEST_F(host_inbound, timestamps_299_seconds_off_are_accepted_and_301_refused) {
    std::vector<std::pair<int, bool>> const offsets{{-299, true}, {299, true}, {-301, false}, {301, false}};
    for (auto const& s : scheme_cases("303")) {
        if (s.name == "github" || s.name == "twilio") continue;  // no timestamp in these schemes
        SCOPED_TRACE(s.name);
        auto id = connection(s.scheme, s.secret);
        json::array requests;
        std::vector<std::string> bodies;
        for (std::size_t i = 0; i < offsets.size(); ++i) {
            auto c = case_of(s.name, "303" + std::to_string(i));
            auto req = to_sign(c.name, c.secret, c.body);
            req["id"] = "ts-" + s.name + "-" + std::to_string(i);
            req["offset"] = offsets[i].first;
            requests.push_back(req);
            bodies.push_back(c.body);
        }
        auto headers = sign_all(requests);
        std::vector<http_answer> answers;
        for (std::size_t i = 0; i < offsets.size(); ++i) answers.push_back(post(target(id), headers[i], bodies[i]));
        for (std::size_t i = 0; i < offsets.size(); ++i) {
            auto const& r = answers[i];
            if (offsets[i].second) {
                EXPECT_EQ(r.status, 202) << offsets[i].first << ": " << r.body;
            } else {
                EXPECT_EQ(r.status, 401) << offsets[i].first << ": " << r.body;
                if (r.status == 401) {
                    EXPECT_EQ(problem_type(r), std::string(problems) + "stale-timestamp") << r.body;
                }
            }
        }
    }
}

// egress-and-bad-input.md: malformed signature headers (no `t=`, `t=abc`, a 20-digit `t`,
// odd-length hex, wrong length, non-base64) and missing ones get a clear 401 naming the reason.
TEST_F(host_inbound, malformed_or_missing_signature_headers_get_a_clear_401) {
    auto github = connection("github", github_secret);
    auto stripe = connection("stripe", stripe_secret);
    auto standard = connection("standard", standard_secret);
    auto twilio = connection("twilio", twilio_token);
    auto const hex64 = std::string(64, 'a');
    auto const t = std::to_string(now_unix());
    auto const body = std::string(R"({"id":"evt_malformed","type":"charge.succeeded"})");
    struct malformed {
        std::string what, connection;
        json::object headers;
        std::string reason;
    };
    std::vector<malformed> cases{
        {"stripe: no header", stripe, {}, "missing-signature"},
        {"stripe: no t=", stripe, {{"Stripe-Signature", "v1=" + hex64}}, "malformed-signature"},
        {"stripe: t=abc", stripe, {{"Stripe-Signature", "t=abc,v1=" + hex64}}, "malformed-signature"},
        {"stripe: a 20-digit t", stripe, {{"Stripe-Signature", "t=12345678901234567890,v1=" + hex64}}, "malformed-signature"},
        {"stripe: odd-length hex", stripe, {{"Stripe-Signature", "t=" + t + ",v1=" + hex64.substr(1)}}, "malformed-signature"},
        {"stripe: wrong length", stripe, {{"Stripe-Signature", "t=" + t + ",v1=" + hex64.substr(2)}}, "malformed-signature"},
        {"stripe: not hex", stripe, {{"Stripe-Signature", "t=" + t + ",v1=" + std::string(64, 'z')}}, "malformed-signature"},
        {"github: no header", github, {{"X-GitHub-Delivery", "gh-m-1"}, {"X-GitHub-Event", "push"}}, "missing-signature"},
        {"github: no sha256=", github,
         {{"X-GitHub-Delivery", "gh-m-2"}, {"X-GitHub-Event", "push"}, {"X-Hub-Signature-256", hex64}}, "malformed-signature"},
        {"github: odd-length hex", github,
         {{"X-GitHub-Delivery", "gh-m-3"}, {"X-GitHub-Event", "push"}, {"X-Hub-Signature-256", "sha256=" + hex64.substr(1)}},
         "malformed-signature"},
        {"github: wrong length", github,
         {{"X-GitHub-Delivery", "gh-m-4"}, {"X-GitHub-Event", "push"}, {"X-Hub-Signature-256", "sha256=abcd"}},
         "malformed-signature"},
        {"standard: no headers", standard, {}, "missing-signature"},
        {"standard: t=abc", standard,
         {{"webhook-id", "msg_m1"}, {"webhook-timestamp", "abc"}, {"webhook-signature", "v1," + base64(std::string(32, 'x'))}},
         "malformed-signature"},
        {"standard: a 20-digit timestamp", standard,
         {{"webhook-id", "msg_m2"}, {"webhook-timestamp", "12345678901234567890"}, {"webhook-signature", "v1," + base64(std::string(32, 'x'))}},
         "malformed-signature"},
        {"standard: not base64", standard,
         {{"webhook-id", "msg_m3"}, {"webhook-timestamp", t}, {"webhook-signature", "v1,!!!not*base64!!!"}}, "malformed-signature"},
        {"twilio: no header", twilio, {{"Content-Type", "application/x-www-form-urlencoded"}}, "missing-signature"},
        {"twilio: not base64", twilio,
         {{"Content-Type", "application/x-www-form-urlencoded"}, {"X-Twilio-Signature", "%%%%"}}, "malformed-signature"},
    };
    for (auto const& c : cases) {
        auto r = post(target(c.connection), c.headers, c.connection == twilio ? "MessageSid=SM1&Body=x" : body);
        EXPECT_EQ(r.status, 401) << c.what << ": " << r.body;
        ASSERT_EQ(r.headers["content-type"], "application/problem+json") << c.what << ": " << r.body;
        EXPECT_EQ(problem_type(r), std::string(problems) + c.reason) << c.what << ": " << r.body;
        EXPECT_FALSE(problem_detail(r).empty()) << c.what;
    }
    EXPECT_EQ(api(host_->port(), "").get("/healthz").status, 200);
}

// egress-and-bad-input.md: any change to the body (whitespace, key order, CRLF, BOM, trailing
// newline) fails verification: the signature covers the raw bytes, never a re-serialised form.
TEST_F(host_inbound, any_change_to_the_body_fails_verification) {
    auto body = std::string(R"({"id":"evt_raw","type":"charge.succeeded","data":{"a":1,"b":2}})");
    std::vector<std::pair<std::string, std::string>> changes{
        {"whitespace", R"({"id": "evt_raw","type":"charge.succeeded","data":{"a":1,"b":2}})"},
        {"key order", R"({"type":"charge.succeeded","id":"evt_raw","data":{"a":1,"b":2}})"},
        {"CRLF", "{\"id\":\"evt_raw\",\r\n\"type\":\"charge.succeeded\",\"data\":{\"a\":1,\"b\":2}}"},
        {"BOM", "\xEF\xBB\xBF" + body},
        {"trailing newline", body + "\n"},
    };
    for (auto const& s : scheme_cases("404")) {
        if (s.name == "twilio") continue;  // a form, not JSON: its one-byte change is covered above
        SCOPED_TRACE(s.name);
        auto id = connection(s.scheme, s.secret);
        auto c = s;
        c.body = body;
        auto headers = signed_headers(c, target(id), "raw-" + s.name);
        for (auto const& [what, changed] : changes) {
            auto r = post(target(id), headers, changed);
            EXPECT_EQ(r.status, 401) << what << ": " << r.body;
            EXPECT_EQ(problem_type(r), std::string(problems) + "signature-mismatch") << what;
        }
        EXPECT_EQ(post(target(id), headers, body).status, 202);
    }
}

// egress-and-bad-input.md: the same delivery id twice is processed once and acknowledged both
// times; the same id with a different body is refused (409) and recorded.
TEST_F(host_inbound, the_same_id_with_another_body_is_409_and_recorded) {
    auto id = connection("github", github_secret);
    auto body = std::string(R"({"action":"opened","number":1})");
    auto other = std::string(R"({"action":"closed","number":1})");
    auto signed_pair = sign_all({[&] { auto r = to_sign("github", github_secret, body); r["id"] = "gh-dup"; return r; }(),
                                 [&] { auto r = to_sign("github", github_secret, other); r["id"] = "gh-dup"; return r; }()});
    EXPECT_EQ(post(target(id), signed_pair[0], body).status, 202);
    EXPECT_EQ(post(target(id), signed_pair[0], body).status, 200);
    auto conflict = post(target(id), signed_pair[1], other);
    EXPECT_EQ(conflict.status, 409) << conflict.body;
    EXPECT_EQ(problem_type(conflict), std::string(problems) + "delivery-id-conflict") << conflict.body;
    auto listed = deliveries(id);
    std::multiset<std::string> statuses;
    for (auto const& d : listed) statuses.insert(str(d, "status"));
    EXPECT_EQ(statuses, (std::multiset<std::string>{"Accepted", "Failed"})) << json::serialize(listed);
    auto failures = a().get("/integrations/failures");
    ASSERT_EQ(failures.status, 200);
    EXPECT_NE(failures.body.find("delivery-id-conflict"), std::string::npos) << failures.body;
    // The conflict is recorded with a capped excerpt at most, never the secret.
    EXPECT_EQ(failures.body.find(github_secret), std::string::npos);
}

// An unknown connection, one without an inbound registration and a retired one are 404, and
// nothing is written for any tenant.
TEST_F(host_inbound, unknown_unregistered_or_retired_connections_are_404_and_nothing_is_written) {
    auto retired = connection("github", github_secret);
    auto retire = a().post("/integrations/connections/" + retired + "/retire", json::object{});
    ASSERT_EQ(retire.status, 200) << retire.body;
    auto unregistered = str(connect(a(), provider_, credential_).json(), "connectionId");
    auto body = std::string(R"({"action":"opened"})");
    auto req = to_sign("github", github_secret, body);
    req["id"] = "gh-404";
    auto headers = sign(req);
    for (auto const& conn : {std::string("conn-not-there"), std::string("01J00000000000000000000000"), unregistered, retired}) {
        auto r = post(target(conn), headers, body);
        EXPECT_EQ(r.status, 404) << conn << ": " << r.body;
        EXPECT_EQ(problem_type(r), std::string(problems) + "unknown-connection") << r.body;
        EXPECT_TRUE(deliveries(conn).empty()) << conn;
    }
    for (auto const& as : {a(), b()}) {
        auto all = as.get("/webhooks/deliveries?direction=Inbound");
        ASSERT_EQ(all.status, 200);
        EXPECT_TRUE(all.json().at("items").as_array().empty()) << all.body;
        auto failures = as.get("/integrations/failures");
        ASSERT_EQ(failures.status, 200);
        EXPECT_TRUE(failures.json().at("items").as_array().empty()) << failures.body;
    }
    std::size_t blobs = 0;
    if (std::filesystem::exists(dir_.path() / "blobs"))
        for (auto const& e : std::filesystem::recursive_directory_iterator(dir_.path() / "blobs")) blobs += e.is_regular_file();
    EXPECT_EQ(blobs, 0u) << "a payload was written";
}

// egress-and-bad-input.md: a Content-Length of 100 MB and an endless chunked body get 413 without
// being buffered: the first is answered before a byte of its body is sent, the second while it is
// still being sent. Counted as rejected (body-too-large).
TEST_F(host_inbound, oversized_bodies_get_413_without_being_buffered) {
    auto id = connection("github", github_secret);
    int fd = connect_loopback(host_->port());
    std::string head = "POST " + target(id) + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "X-GitHub-Delivery: big-1\r\nX-GitHub-Event: push\r\nX-Hub-Signature-256: sha256=" + std::string(64, 'a') +
                       "\r\nContent-Length: 100000000\r\n\r\n";
    ASSERT_EQ(::send(fd, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));
    bool closed = false;
    auto answer = parse_answer(read_all(fd, 5s, &closed));
    ::close(fd);
    EXPECT_EQ(answer.status, 413) << answer.body;
    EXPECT_EQ(problem_type(answer), std::string(problems) + "payload-too-large");
    EXPECT_NE(problem_detail(answer).find("1048576"), std::string::npos) << answer.body;

    fd = connect_loopback(host_->port());
    head = "POST " + target(id) + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    ASSERT_EQ(::send(fd, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));
    std::string chunk = "1000\r\n" + std::string(0x1000, ' ') + "\r\n";
    std::size_t sent = 0;
    while (sent < 256u * 1024 * 1024) {  // until the host answers or stops reading
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 0) > 0) break;
        auto n = ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += static_cast<std::size_t>(n);
    }
    auto chunked = parse_answer(read_all(fd, 5s, &closed));
    ::close(fd);
    EXPECT_EQ(chunked.status, 413) << chunked.body;
    EXPECT_LT(sent, 64u * 1024 * 1024) << "the host kept reading";

    EXPECT_TRUE(deliveries(id).empty());
    auto metrics = ops().get("/metrics");
    ASSERT_EQ(metrics.status, 200);
    EXPECT_EQ(metric(metrics.body, "integration_inbound_webhooks_rejected_total{reason=\"body-too-large\"}"), 2) << metrics.body;
}

// --inbound-body-limit changes the route's limit (and only its): a body at the limit is
// verified and accepted, one byte more is 413.
TEST(host_inbound_limit, the_inbound_body_limit_is_a_flag) {
    scratch_dir dir("inbound-limit");
    auto key = create_key(dir.string(), "tenant-l");
    host_process host(dir.string(), {"--inbound-body-limit", "4096", "--key-rate-limit", "0"});
    api a(host.port(), key);
    auto provider = provider_with(a, "vendor", "http://127.0.0.1:9", {op("x.send", "POST", "/x")});
    auto credential = api_key_credential(a, provider, "k");
    auto id = str(connect(a, provider, credential).json(), "connectionId");
    ASSERT_EQ(a.post("/integrations/connections/" + id + "/inbound-webhook", json::object{{"scheme", "github"}, {"secret", github_secret}}).status, 200);
    auto padded = [](std::size_t n) {
        std::string body = R"({"action":"opened","pad":")";
        return body + std::string(n - body.size() - 2, 'x') + "\"}";
    };
    auto at_limit = padded(4096), over = padded(4097);
    auto r1 = to_sign("github", github_secret, at_limit);
    r1["id"] = "limit-1";
    auto r2 = to_sign("github", github_secret, over);
    r2["id"] = "limit-2";
    auto headers = sign_all({r1, r2});
    auto ok = parse_answer(raw_exchange(host.port(), vendor_post("/webhooks/inbound/" + id, headers[0], at_limit)));
    EXPECT_EQ(ok.status, 202) << ok.body;
    auto refused = parse_answer(raw_exchange(host.port(), vendor_post("/webhooks/inbound/" + id, headers[1], over)));
    EXPECT_EQ(refused.status, 413) << refused.body;
    EXPECT_NE(problem_detail(refused).find("4096"), std::string::npos) << refused.body;
    // Other routes keep theirs.
    EXPECT_EQ(a.call("POST", "/integrations/providers", "{\"key\": \"" + std::string(5000, 'k') + "\"}").status, 400);
}

// egress-and-bad-input.md: empty bodies, invalid UTF-8 and JSON nested 100,000 deep get a clear
// 4xx and no crash, even when correctly signed.
TEST_F(host_inbound, empty_invalid_utf8_and_deeply_nested_bodies_get_a_clear_4xx) {
    auto github = connection("github", github_secret);
    auto stripe = connection("stripe", stripe_secret);
    auto deep = std::string(100'000, '[') + std::string(100'000, ']');
    struct bad {
        std::string what, body;
    };
    std::vector<bad> bodies{{"empty", ""}, {"invalid UTF-8", "{\"action\":\"caf\xC3\x28\"}"}, {"overlong UTF-8", "{\"a\":\"\xC0\xAF\"}"},
                            {"100,000 deep", deep}};
    json::array requests;
    for (std::size_t i = 0; i < bodies.size(); ++i) {
        json::object gh{{"scheme", "github"}, {"secret", github_secret}, {"bodyBase64", base64(bodies[i].body)},
                        {"id", "bad-" + std::to_string(i)}};
        requests.push_back(gh);
        // Stripe's library signs strings: the valid UTF-8 ones.
        if (i == 0 || i == 3) requests.push_back(json::object{{"scheme", "stripe"}, {"secret", stripe_secret}, {"body", bodies[i].body}});
    }
    auto headers = sign_all(requests);
    std::size_t h = 0;
    for (std::size_t i = 0; i < bodies.size(); ++i) {
        auto r = post(target(github), headers[h++], bodies[i].body);
        EXPECT_GE(r.status, 400) << "github " << bodies[i].what << ": " << r.body.substr(0, 300);
        EXPECT_LT(r.status, 500) << "github " << bodies[i].what << ": " << r.body.substr(0, 300);
        EXPECT_EQ(r.headers["content-type"], "application/problem+json") << bodies[i].what;
        if (i == 0 || i == 3) {
            auto s = post(target(stripe), headers[h++], bodies[i].body);
            EXPECT_EQ(s.status, 400) << "stripe " << bodies[i].what << ": " << s.body.substr(0, 300);
            EXPECT_EQ(problem_type(s), std::string(problems) + "malformed-body") << s.body.substr(0, 300);
        }
    }
    EXPECT_EQ(api(host_->port(), "").get("/healthz").status, 200);
    EXPECT_EQ(accepted(github), 0u);
    EXPECT_EQ(accepted(stripe), 0u);
}

// egress-and-bad-input.md: Content-Length together with Transfer-Encoding, or two different
// Content-Lengths, are refused before the gateway sees them.
TEST_F(host_inbound, ambiguous_framing_is_refused) {
    auto id = connection("github", github_secret);
    auto body = std::string(R"({"action":"opened"})");
    auto req = to_sign("github", github_secret, body);
    req["id"] = "framing-1";
    auto headers = sign(req);
    std::string fields;
    for (auto const& [k, v] : headers) fields += std::string(k) + ": " + std::string(v.as_string()) + "\r\n";
    auto head = "POST " + target(id) + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n" + fields;
    auto both = parse_answer(raw_exchange(host_->port(), head + "Content-Length: " + std::to_string(body.size()) +
                                                            "\r\nTransfer-Encoding: chunked\r\n\r\n" + body));
    EXPECT_EQ(both.status, 400) << both.body;
    EXPECT_EQ(problem_type(both), std::string(problems) + "bad-request");
    auto two = parse_answer(raw_exchange(host_->port(), head + "Content-Length: " + std::to_string(body.size()) +
                                                           "\r\nContent-Length: " + std::to_string(body.size() + 1) + "\r\n\r\n" + body + " "));
    EXPECT_EQ(two.status, 400) << two.body;
    EXPECT_TRUE(deliveries(id).empty());
    // Framed once, it is accepted.
    EXPECT_EQ(post(target(id), headers, body).status, 202);
}

// egress-and-bad-input.md: a slow client (a byte every 10 s) is timed out, and idle sockets do not
// starve a vendor's request.
TEST_F(host_inbound, a_slow_client_is_timed_out_and_idle_sockets_do_not_starve_others) {
    auto id = connection("github", github_secret);
    std::vector<int> idle;
    for (int i = 0; i < 64; ++i) idle.push_back(connect_loopback(host_->port()));
    int slow = connect_loopback(host_->port());
    std::string head = "POST " + target(id) + " HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nX-GitHub-Event: p";
    ASSERT_EQ(::send(slow, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));

    auto body = std::string(R"({"action":"opened"})");
    auto req = to_sign("github", github_secret, body);
    req["id"] = "busy-1";
    auto ok = post(target(id), sign(req), body);
    EXPECT_EQ(ok.status, 202) << ok.body;

    // Its next byte would come 10 s later: the header deadline (2 s here) closes it first.
    auto start = std::chrono::steady_clock::now();
    bool closed = false;
    auto got = read_all(slow, 10s, &closed);
    ::close(slow);
    EXPECT_TRUE(closed);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 9s);
    EXPECT_EQ(got.find(" 20"), std::string::npos) << got;
    for (int fd : idle) ::close(fd);
}

// The secret rotates: the new one verifies at once and the previous one during the overlap;
// another tenant can neither register nor rotate (404), and a third secret never verifies.
TEST_F(host_inbound, a_rotated_secret_and_the_previous_one_both_verify_and_other_tenants_get_404) {
    auto id = connection("github", github_secret);
    auto rotate = a().post("/integrations/connections/" + id + "/inbound-webhook/rotate-secret", json::object{{"secret", "gh-new-secret"}});
    ASSERT_EQ(rotate.status, 200) << rotate.body;
    EXPECT_EQ(str(rotate.json(), "scheme"), "github");
    EXPECT_EQ(rotate.body.find("gh-new-secret"), std::string::npos);
    auto body = std::string(R"({"action":"opened"})");
    json::array requests;
    for (auto const& [secret, delivery] : {std::pair{github_secret, "rot-old"}, {std::string("gh-new-secret"), "rot-new"},
                                           {std::string("gh-other-secret"), "rot-other"}}) {
        auto r = to_sign("github", secret, body);
        r["id"] = delivery;
        requests.push_back(r);
    }
    auto headers = sign_all(requests);
    EXPECT_EQ(post(target(id), headers[0], body).status, 202);
    EXPECT_EQ(post(target(id), headers[1], body).status, 202);
    auto other = post(target(id), headers[2], body);
    EXPECT_EQ(other.status, 401) << other.body;

    for (auto const& [path, payload] :
         {std::pair{"/inbound-webhook", json::object{{"scheme", "github"}, {"secret", "evil"}}},
          {"/inbound-webhook/rotate-secret", json::object{{"secret", "evil"}}}}) {
        auto r = b().post("/integrations/connections/" + id + path, payload);
        EXPECT_EQ(r.status, 404) << path << ": " << r.body;
        EXPECT_EQ(r.headers["content-type"], "application/problem+json");
    }
    EXPECT_EQ(a().post("/integrations/connections/conn-not-there/inbound-webhook/rotate-secret", json::object{{"secret", "x"}}).status, 404);
    auto missing = a().post("/integrations/connections/" + id + "/inbound-webhook/rotate-secret", json::object{});
    EXPECT_EQ(missing.status, 400) << missing.body;
    // Tenant B's attempts changed nothing: the rotated secret still verifies.
    auto r = to_sign("github", "gh-new-secret", body);
    r["id"] = "rot-after";
    EXPECT_EQ(post(target(id), sign(r), body).status, 202);
}

// /metrics counts inbound webhooks accepted, duplicate and rejected by reason.
TEST_F(host_inbound, metrics_count_accepted_duplicate_and_rejected_by_reason) {
    auto id = connection("github", github_secret);
    auto body = std::string(R"({"action":"opened"})");
    auto req = to_sign("github", github_secret, body);
    req["id"] = "metrics-1";
    auto headers = sign(req);
    EXPECT_EQ(post(target(id), headers, body).status, 202);
    EXPECT_EQ(post(target(id), headers, body).status, 200);
    EXPECT_EQ(post(target(id), headers, body + " ").status, 401);
    EXPECT_EQ(post(target(id), {}, body).status, 401);
    EXPECT_EQ(post(target("conn-not-there"), headers, body).status, 404);
    auto m = ops().get("/metrics");
    ASSERT_EQ(m.status, 200);
    EXPECT_EQ(metric(m.body, "integration_inbound_webhooks_total{outcome=\"accepted\"}"), 1) << m.body;
    EXPECT_EQ(metric(m.body, "integration_inbound_webhooks_total{outcome=\"duplicate\"}"), 1);
    EXPECT_EQ(metric(m.body, "integration_inbound_webhooks_total{outcome=\"rejected\"}"), 3);
    EXPECT_EQ(metric(m.body, "integration_inbound_webhooks_rejected_total{reason=\"signature-mismatch\"}"), 1);
    EXPECT_EQ(metric(m.body, "integration_inbound_webhooks_rejected_total{reason=\"missing-signature\"}"), 1);
    EXPECT_EQ(metric(m.body, "integration_inbound_webhooks_rejected_total{reason=\"unknown-connection\"}"), 1);
    // No connection id, tenant or secret becomes a label.
    EXPECT_EQ(m.body.find(id), std::string::npos);
    EXPECT_EQ(m.body.find(github_secret), std::string::npos);
}

// A canonical event's type comes from the vendor's body: a sender choosing a new one per request
// grew the relayed-events metric by a series each. They count under their scheme.
TEST_F(host_inbound, relayed_inbound_events_count_under_their_scheme_not_the_senders_type) {
    auto id = connection("github", github_secret);
    for (int i = 0; i < 3; ++i) {
        auto body = R"({"action":"sender-chosen-)" + std::to_string(i) + R"(","number":1,"pull_request":{"title":"x"}})";
        auto req = to_sign("github", github_secret, body);
        req["id"] = "types-" + std::to_string(i);
        EXPECT_EQ(post(target(id), sign(req), body).status, 202);
    }
    std::string body;
    for (int i = 0; i < 300 && metric(body, "integration_events_published_total{type=\"github.*\"}") < 3; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        body = ops().get("/metrics").body;
    }
    EXPECT_EQ(metric(body, "integration_events_published_total{type=\"github.*\"}"), 3) << body;
    EXPECT_EQ(body.find("sender-chosen"), std::string::npos) << body;
}

}  // namespace
}  // namespace integration::testing
