#include <integration/services/inbound_signature.hpp>

#include <integration/services/webhook_signature.hpp>

#include "support/base64.hpp"
#include "support/hmac.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

using namespace integration;
using namespace integration::webhooks;
namespace support = integration::testing;

// ---- The test's own signers (OpenSSL's one-shot HMAC, not the library's code path) ----

using support::hex;
using support::raw_hmac;

std::string sha256_hex(std::string_view data) {
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<unsigned char const*>(data.data()), data.size(), d);
    return hex({reinterpret_cast<char const*>(d), sizeof d});
}

/** A request with owned headers, viewed as an `inbound_request`. */
struct request {
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    std::string url;
    std::string content_type = "application/json";
    std::vector<header_field> fields;

    request& set(std::string const& name, std::string value) {
        for (auto& [n, v] : headers)
            if (n == name) {
                v = std::move(value);
                return *this;
            }
        headers.emplace_back(name, std::move(value));
        return *this;
    }
    request& erase(std::string const& name) {
        std::erase_if(headers, [&](auto const& h) { return h.first == name; });
        return *this;
    }
    std::string& at(std::string const& name) {
        for (auto& [n, v] : headers)
            if (n == name) return v;
        throw std::out_of_range(name);
    }
    inbound_request view() {
        fields.clear();
        for (auto const& [n, v] : headers) fields.push_back({n, v});
        return {fields, body, url, content_type};
    }
};

inbound_verdict verify(inbound_scheme scheme, std::vector<std::string> const& secrets, request& r, std::int64_t now,
                       std::int64_t tolerance = 300) {
    std::vector<secret_bytes> keys;
    for (auto const& s : secrets) keys.emplace_back(s);
    return verify_inbound(scheme, keys, r.view(), now, tolerance);
}
inbound_verdict verify(inbound_scheme scheme, std::string const& secret, request& r, std::int64_t now,
                       std::int64_t tolerance = 300) {
    return verify(scheme, std::vector<std::string>{secret}, r, now, tolerance);
}
std::optional<inbound_refusal> check(inbound_scheme scheme, std::string const& secret, request& r, std::int64_t now) {
    secret_bytes key(secret);
    return check_inbound_signature(scheme, {&key, 1}, r.view(), now);
}

::testing::AssertionResult signature_ok(std::optional<inbound_refusal> const& r) {
    if (!r) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "refused: " << to_string(r->reason) << ": " << r->detail;
}
::testing::AssertionResult accepted(inbound_verdict const& v) {
    if (v && !v.refusal) return ::testing::AssertionSuccess();
    if (!v.refusal) return ::testing::AssertionFailure() << "neither identity nor refusal";
    return ::testing::AssertionFailure() << "refused: " << to_string(v.refusal->reason) << ": " << v.refusal->detail;
}
::testing::AssertionResult refused(inbound_verdict const& v, inbound_rejection reason) {
    if (v || !v.refusal) return ::testing::AssertionFailure() << "accepted";
    if (v.refusal->reason != reason)
        return ::testing::AssertionFailure() << "refused as " << to_string(v.refusal->reason) << " ("
                                             << v.refusal->detail << "), expected " << to_string(reason);
    if (v.refusal->detail.empty()) return ::testing::AssertionFailure() << "refused without a detail";
    return ::testing::AssertionSuccess();
}

constexpr std::int64_t now = 1700000000;
std::string const standard_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
std::string const plain_secret = "whsec_test_secret";  // Stripe's form; the other schemes take any bytes
std::string const twilio_url = "https://mycompany.com/myapp.php?foo=1&bar=2";

// ---- Signed requests per scheme ----

std::string standard_signature(std::string const& secret, std::string const& id, std::int64_t ts, std::string_view body) {
    // The outbound signer, itself checked against the reference vector and the npm libraries.
    return sign(secret_bytes(secret), id, ts, body).value();
}
std::string twilio_signature(std::string const& token, std::string const& url,
                             std::vector<std::pair<std::string, std::string>> params) {
    std::sort(params.begin(), params.end());
    std::string data = url;
    for (auto const& [k, v] : params) data += k + v;
    return support::base64(raw_hmac(EVP_sha1(), token, data));
}

std::string form_decode(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '+') {
            out += ' ';
        } else if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
                   std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
            out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

// A JSON body (a form of Twilio parameters for Twilio) signed with `secret` at `ts`.
request signed_request(inbound_scheme scheme, std::string const& secret, std::string body, std::int64_t ts = now) {
    request r;
    r.body = std::move(body);
    auto const t = std::to_string(ts);
    switch (scheme) {
        case inbound_scheme::standard:
            r.set("webhook-id", "msg_1").set("webhook-timestamp", t);
            r.set("webhook-signature", standard_signature(secret, "msg_1", ts, r.body));
            break;
        case inbound_scheme::github:
            r.set("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958").set("X-GitHub-Event", "issues");
            r.set("X-Hub-Signature-256", "sha256=" + hex(raw_hmac(EVP_sha256(), secret, r.body)));
            break;
        case inbound_scheme::stripe:
            r.set("Stripe-Signature", "t=" + t + ",v1=" + hex(raw_hmac(EVP_sha256(), secret, t + "." + r.body)));
            break;
        case inbound_scheme::slack:
            r.set("X-Slack-Request-Timestamp", t);
            r.set("X-Slack-Signature", "v0=" + hex(raw_hmac(EVP_sha256(), secret, "v0:" + t + ":" + r.body)));
            break;
        case inbound_scheme::twilio: {
            r.url = twilio_url;
            r.content_type = "application/x-www-form-urlencoded";
            std::vector<std::pair<std::string, std::string>> params;
            std::string_view rest = r.body;
            while (!rest.empty()) {
                auto const amp = std::min(rest.find('&'), rest.size());
                auto const pair = rest.substr(0, amp);
                auto const eq = std::min(pair.find('='), pair.size());
                params.emplace_back(form_decode(pair.substr(0, eq)), form_decode(eq < pair.size() ? pair.substr(eq + 1) : ""));
                rest.remove_prefix(std::min(amp + 1, rest.size()));
            }
            r.set("X-Twilio-Signature", twilio_signature(secret, r.url, params));
            break;
        }
        case inbound_scheme::shopify:
            r.set("X-Shopify-Webhook-Id", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043").set("X-Shopify-Topic", "orders/create");
            r.set("X-Shopify-Hmac-Sha256", support::base64(raw_hmac(EVP_sha256(), secret, r.body)));
            break;
    }
    return r;
}

std::string secret_for(inbound_scheme s) { return s == inbound_scheme::standard ? standard_secret : plain_secret; }
std::string body_for(inbound_scheme s) {
    if (s == inbound_scheme::twilio) return "MessageSid=SM123&From=%2B12349013030&Body=hello";
    if (s == inbound_scheme::stripe) return R"({"id":"evt_1","type":"charge.succeeded","data":{"object":{}}})";
    return R"({"type":"event_callback","event_id":"Ev1","action":"opened","id":1})";
}

constexpr inbound_scheme all_schemes[] = {inbound_scheme::standard, inbound_scheme::github, inbound_scheme::stripe,
                                          inbound_scheme::slack,    inbound_scheme::twilio, inbound_scheme::shopify};
constexpr inbound_scheme timed_schemes[] = {inbound_scheme::standard, inbound_scheme::stripe, inbound_scheme::slack};

// The header that carries each scheme's signature.
std::string signature_header_of(inbound_scheme s) {
    switch (s) {
        case inbound_scheme::standard: return "webhook-signature";
        case inbound_scheme::github: return "X-Hub-Signature-256";
        case inbound_scheme::stripe: return "Stripe-Signature";
        case inbound_scheme::slack: return "X-Slack-Signature";
        case inbound_scheme::twilio: return "X-Twilio-Signature";
        case inbound_scheme::shopify: return "X-Shopify-Hmac-Sha256";
    }
    return {};
}

// ---- The reference vectors (../shared/reference/webhook-signatures.md) ----

TEST(InboundSignatureVectors, StandardWebhooks) {
    request r;
    r.set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
        .set("webhook-timestamp", "1614265330")
        .set("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    r.body = R"({"test": 2432232314})";
    auto v = verify(inbound_scheme::standard, standard_secret, r, 1614265330);
    ASSERT_TRUE(accepted(v));
    EXPECT_EQ(v.identity->provider_delivery_id, "msg_p5jXN8AQM9LWM0D4loKWxJek");
    EXPECT_EQ(v.identity->event_type, "standard.event");
    EXPECT_EQ(v.identity->timestamp, 1614265330);
}

TEST(InboundSignatureVectors, Svix) {
    request r;
    r.set("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
        .set("svix-timestamp", "1614265330")
        .set("svix-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    r.body = R"({"test": 2432232314})";
    EXPECT_TRUE(accepted(verify(inbound_scheme::standard, standard_secret, r, 1614265330)));
}

TEST(InboundSignatureVectors, GitHub) {
    request r;
    r.set("X-GitHub-Delivery", "d1").set("X-GitHub-Event", "ping");
    r.set("X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
    r.body = "Hello, World!";
    EXPECT_TRUE(signature_ok(check(inbound_scheme::github, "It's a Secret to Everybody", r, now)));
    // The vector's body is not a GitHub event: the signature verifies, and the body is refused.
    EXPECT_TRUE(refused(verify(inbound_scheme::github, "It's a Secret to Everybody", r, now),
                        inbound_rejection::malformed_body));
}

TEST(InboundSignatureVectors, Stripe) {
    request r;
    r.set("Stripe-Signature", "t=1614265330,v1=10c96c6fd3f320fcfc264cdc4f476c15060ede8e8a08404cea2ddf3b72544a9c");
    r.body = R"({"test": 2432232314})";
    EXPECT_TRUE(signature_ok(check(inbound_scheme::stripe, "whsec_test_secret", r, 1614265330)));
    // Verified, but a body without an event id cannot be deduplicated.
    EXPECT_TRUE(refused(verify(inbound_scheme::stripe, "whsec_test_secret", r, 1614265330),
                        inbound_rejection::malformed_body));
}

TEST(InboundSignatureVectors, Slack) {
    request r;
    r.content_type = "application/x-www-form-urlencoded";
    r.set("X-Slack-Request-Timestamp", "1531420618")
        .set("X-Slack-Signature", "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503");
    r.body =
        "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name="
        "foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%"
        "2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015."
        "47445629121.803a0bc887a14d10d2c447fce8b6703c";
    auto v = verify(inbound_scheme::slack, "8f742231b10e8888abcd99yyyzzz85a5", r, 1531420618);
    ASSERT_TRUE(accepted(v));
    EXPECT_EQ(v.identity->event_type, "slack.command");
    EXPECT_EQ(v.identity->provider_delivery_id, sha256_hex("1531420618:" + r.body));
    EXPECT_EQ(v.identity->timestamp, 1531420618);
}

TEST(InboundSignatureVectors, Twilio) {
    request r;
    r.url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    r.content_type = "application/x-www-form-urlencoded";
    r.set("X-Twilio-Signature", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
    r.body = "CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212";
    auto v = verify(inbound_scheme::twilio, "12345", r, now);
    ASSERT_TRUE(accepted(v));
    EXPECT_EQ(v.identity->event_type, "twilio.voice.call");
    // What Twilio signed: the URL, then the decoded parameters sorted by name.
    EXPECT_EQ(v.identity->provider_delivery_id,
              sha256_hex(r.url + "CallSidCA1234567890ABCDECaller+12349013030Digits1234From+12349013030To+18005551212"));
    EXPECT_EQ(v.identity->timestamp, std::nullopt);
    // Twilio signs the sorted parameters, so their order in the body does not matter.
    r.body = "To=%2B18005551212&From=%2B12349013030&Digits=1234&Caller=%2B12349013030&CallSid=CA1234567890ABCDE";
    EXPECT_TRUE(accepted(verify(inbound_scheme::twilio, "12345", r, now)));
}

TEST(InboundSignatureVectors, Shopify) {
    request r;
    r.set("X-Shopify-Webhook-Id", "w1").set("X-Shopify-Topic", "orders/create");
    r.set("X-Shopify-Hmac-Sha256", "plW8VGqq0nDMIEhDqaNNW99asdUCy7EIqLZVcQwtAZ0=");
    r.body = R"({"id":1})";
    auto v = verify(inbound_scheme::shopify, "shop-secret", r, now);
    ASSERT_TRUE(accepted(v));
    EXPECT_EQ(v.identity->provider_delivery_id, "w1");
    EXPECT_EQ(v.identity->event_type, "shopify.orders.create");
}

// ---- Identities and event types ----

TEST(InboundIdentity, GitHubEventAndAction) {
    auto r = signed_request(inbound_scheme::github, plain_secret, R"({"action":"opened","number":1})");
    r.set("X-GitHub-Event", "pull_request");
    r.at("X-Hub-Signature-256") = "sha256=" + hex(raw_hmac(EVP_sha256(), plain_secret, r.body));
    auto v = verify(inbound_scheme::github, plain_secret, r, now);
    ASSERT_TRUE(accepted(v));
    EXPECT_EQ(v.identity->event_type, "github.pull_request.opened");
    EXPECT_EQ(v.identity->provider_delivery_id, "72d3162e-cc78-11e3-81ab-4c9367dc0958");

    auto ping = signed_request(inbound_scheme::github, plain_secret, R"({"zen":"Keep it logically awesome."})");
    ping.set("X-GitHub-Event", "ping");
    auto p = verify(inbound_scheme::github, plain_secret, ping, now);
    ASSERT_TRUE(accepted(p));
    EXPECT_EQ(p.identity->event_type, "github.ping");
}

TEST(InboundIdentity, GitHubFormEncodedPayload) {
    auto r = signed_request(inbound_scheme::github, plain_secret, "payload=%7B%22action%22%3A%22created%22%7D");
    r.content_type = "application/x-www-form-urlencoded";
    auto v = verify(inbound_scheme::github, plain_secret, r, now);
    ASSERT_TRUE(accepted(v));
    EXPECT_EQ(v.identity->event_type, "github.issues.created");
}

TEST(InboundIdentity, StripeEventIdAndType) {
    auto r = signed_request(inbound_scheme::stripe, plain_secret, R"({"id":"evt_1NG8Du","type":"charge.succeeded"})");
    auto v = verify(inbound_scheme::stripe, plain_secret, r, now);
    ASSERT_TRUE(accepted(v));
    EXPECT_EQ(v.identity->provider_delivery_id, "evt_1NG8Du");
    EXPECT_EQ(v.identity->event_type, "stripe.charge.succeeded");
    EXPECT_EQ(v.identity->timestamp, now);
}

TEST(InboundIdentity, SlackJsonInteractiveAndCommand) {
    auto r = signed_request(inbound_scheme::slack, plain_secret, R"({"type":"event_callback","event_id":"Ev1"})");
    auto v = verify(inbound_scheme::slack, plain_secret, r, now);
    ASSERT_TRUE(accepted(v));
    EXPECT_EQ(v.identity->event_type, "slack.event_callback");
    EXPECT_EQ(v.identity->provider_delivery_id, "Ev1");
    EXPECT_FALSE(v.identity->challenge);
    // Slack signs each retry anew (a later timestamp): it is the same delivery, its event_id.
    auto retry = signed_request(inbound_scheme::slack, plain_secret, r.body, now + 60);
    retry.set("X-Slack-Retry-Num", "1");
    auto rv = verify(inbound_scheme::slack, plain_secret, retry, now + 61);
    ASSERT_TRUE(accepted(rv));
    EXPECT_EQ(rv.identity->provider_delivery_id, "Ev1");
    auto no_id = signed_request(inbound_scheme::slack, plain_secret, R"({"type":"event_callback"})");
    EXPECT_TRUE(refused(verify(inbound_scheme::slack, plain_secret, no_id, now), inbound_rejection::malformed_body));

    // Saving an Events API request URL: the verified challenge is handed back to be echoed.
    auto handshake = signed_request(inbound_scheme::slack, plain_secret,
                                    R"({"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"})");
    auto h = verify(inbound_scheme::slack, plain_secret, handshake, now);
    ASSERT_TRUE(accepted(h));
    EXPECT_EQ(h.identity->challenge, "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");
    auto forged = handshake;
    forged.body.replace(forged.body.find("3eZ"), 3, "XeZ");
    EXPECT_TRUE(refused(verify(inbound_scheme::slack, plain_secret, forged, now), inbound_rejection::signature_mismatch));
    auto without = signed_request(inbound_scheme::slack, plain_secret, R"({"type":"url_verification"})");
    EXPECT_TRUE(refused(verify(inbound_scheme::slack, plain_secret, without, now), inbound_rejection::malformed_body));

    auto interactive = signed_request(inbound_scheme::slack, plain_secret, "payload=%7B%22type%22%3A%22block_actions%22%7D");
    interactive.content_type = "application/x-www-form-urlencoded; charset=utf-8";
    auto i = verify(inbound_scheme::slack, plain_secret, interactive, now);
    ASSERT_TRUE(accepted(i));
    EXPECT_EQ(i.identity->event_type, "slack.block_actions");

    auto command = signed_request(inbound_scheme::slack, plain_secret, "command=%2Fdeploy&text=now");
    command.content_type = "";
    command.set("Content-Type", "Application/X-WWW-Form-Urlencoded");  // read from the header when not given
    auto c = verify(inbound_scheme::slack, plain_secret, command, now);
    ASSERT_TRUE(accepted(c));
    EXPECT_EQ(c.identity->event_type, "slack.command");
}

TEST(InboundIdentity, TwilioSmsVoiceAndOther) {
    auto sms = signed_request(inbound_scheme::twilio, plain_secret, "MessageSid=SM1&Body=hi");
    auto s = verify(inbound_scheme::twilio, plain_secret, sms, now);
    ASSERT_TRUE(accepted(s));
    EXPECT_EQ(s.identity->event_type, "twilio.sms.received");
    auto old_sms = signed_request(inbound_scheme::twilio, plain_secret, "SmsSid=SM1&Body=hi");
    EXPECT_EQ(verify(inbound_scheme::twilio, plain_secret, old_sms, now).identity->event_type, "twilio.sms.received");
    auto received = signed_request(inbound_scheme::twilio, plain_secret, "MessageSid=SM1&SmsStatus=received&Body=hi");
    EXPECT_EQ(verify(inbound_scheme::twilio, plain_secret, received, now).identity->event_type, "twilio.sms.received");
    // A sent message's status callback carries MessageSid and SmsSid too.
    auto delivered = signed_request(inbound_scheme::twilio, plain_secret,
                                    "MessageSid=SM1&MessageStatus=delivered&SmsSid=SM1&SmsStatus=delivered");
    EXPECT_EQ(verify(inbound_scheme::twilio, plain_secret, delivered, now).identity->event_type, "twilio.sms.status");
    auto failed = signed_request(inbound_scheme::twilio, plain_secret, "SmsSid=SM1&SmsStatus=failed");
    EXPECT_EQ(verify(inbound_scheme::twilio, plain_secret, failed, now).identity->event_type, "twilio.sms.status");
    auto call = signed_request(inbound_scheme::twilio, plain_secret, "CallSid=CA1&From=x");
    EXPECT_EQ(verify(inbound_scheme::twilio, plain_secret, call, now).identity->event_type, "twilio.voice.call");
    auto other = signed_request(inbound_scheme::twilio, plain_secret, "AccountSid=AC1");
    EXPECT_EQ(verify(inbound_scheme::twilio, plain_secret, other, now).identity->event_type, "twilio.event");
}

// A SharedKey webhook: HMAC-SHA256 of what the Auth Token's HMAC-SHA1 covers, named by the
// settings header; a SHA-1 signature under that header, an unknown algorithm, or a SHA-256 one
// without the header are refused.
TEST(InboundTwilio, SharedKeyWebhooksAreHmacSha256) {
    auto r = signed_request(inbound_scheme::twilio, plain_secret, "MessageSid=SM1&Body=hi");
    auto const sha1 = r.at("X-Twilio-Signature");
    std::string data = r.url + "BodyhiMessageSidSM1";
    r.set("X-Twilio-Signature", support::base64(raw_hmac(EVP_sha256(), plain_secret, data)));
    EXPECT_TRUE(refused(verify(inbound_scheme::twilio, plain_secret, r, now), inbound_rejection::malformed_signature));
    r.set("X-Twilio-Webhooks-Signature-Settings", "key=webhooks_sharedkey_1, algorithm=HMAC_SHA256");
    EXPECT_TRUE(accepted(verify(inbound_scheme::twilio, plain_secret, r, now)));
    r.set("X-Twilio-Webhooks-Signature-Settings", "key=webhooks_sharedkey_1,algorithm=HMAC_SHA512");
    EXPECT_TRUE(refused(verify(inbound_scheme::twilio, plain_secret, r, now), inbound_rejection::malformed_signature));
    r.set("X-Twilio-Webhooks-Signature-Settings", "algorithm=HMAC_SHA1");
    r.set("X-Twilio-Signature", sha1);
    EXPECT_TRUE(accepted(verify(inbound_scheme::twilio, plain_secret, r, now)));
    r.set("X-Twilio-Webhooks-Signature-Settings", "algorithm=HMAC_SHA256");
    EXPECT_TRUE(refused(verify(inbound_scheme::twilio, plain_secret, r, now), inbound_rejection::malformed_signature));
}

/** A Twilio request with a JSON body: the URL carries the body's SHA-256 and alone is signed. */
request twilio_json_request(std::string body) {
    request r;
    r.body = std::move(body);
    r.url = "https://example.com/hook?bodySHA256=" + sha256_hex(r.body);
    r.set("X-Twilio-Signature", support::base64(raw_hmac(EVP_sha1(), plain_secret, r.url)));
    return r;
}

TEST(InboundIdentity, TwilioJsonBodyIsCoveredByBodySha256) {
    auto r = twilio_json_request(R"({"MessageSid":"SM1"})");
    ASSERT_TRUE(accepted(verify(inbound_scheme::twilio, plain_secret, r, now)));
    r.body += " ";
    EXPECT_TRUE(refused(verify(inbound_scheme::twilio, plain_secret, r, now), inbound_rejection::signature_mismatch));
    r.url = "https://example.com/hook";  // a JSON body with nothing covering it
    r.set("X-Twilio-Signature", support::base64(raw_hmac(EVP_sha1(), plain_secret, r.url)));
    EXPECT_TRUE(refused(verify(inbound_scheme::twilio, plain_secret, r, now), inbound_rejection::malformed_signature));
}

TEST(InboundIdentity, TwilioSpellingsOfOneSignedFormAreOneDelivery) {
    // Twilio sends no id and no timestamp: the delivery id is the only replay defence, so every
    // body that carries the same signature (same parameters, spelled differently) is one delivery.
    auto r = signed_request(inbound_scheme::twilio, plain_secret, "MessageSid=SM1&From=%2B1555&Body=hi");
    auto first = verify(inbound_scheme::twilio, plain_secret, r, now);
    ASSERT_TRUE(accepted(first));
    for (std::string body : {"MessageSid=SM1&From=%2B1555&Body=hi&", "&&MessageSid=SM1&From=%2B1555&Body=hi",
                             "Body=hi&From=%2B1555&MessageSid=SM1", "%4DessageSid=SM1&From=%2B1555&Body=h%69",
                             "MessageSid=SM1&=&From=%2B1555&Body=hi"}) {
        auto copy = r;
        copy.body = body;
        auto v = verify(inbound_scheme::twilio, plain_secret, copy, now);
        ASSERT_TRUE(accepted(v)) << body;
        EXPECT_EQ(v.identity->provider_delivery_id, first.identity->provider_delivery_id) << body;
    }
    auto other = signed_request(inbound_scheme::twilio, plain_secret, "MessageSid=SM2&From=%2B1555&Body=hi");
    EXPECT_NE(verify(inbound_scheme::twilio, plain_secret, other, now).identity->provider_delivery_id, first.identity->provider_delivery_id);
}

// Twilio signs the URL as it is configured there; its own validator accepts the default port
// spelled or left out, so the public URL and Twilio's console may differ in just that.
TEST(InboundIdentity, TwilioUrlWithOrWithoutTheDefaultPortVerifies) {
    std::vector<std::pair<std::string, std::string>> params{{"MessageSid", "SM1"}, {"Body", "hi"}};
    for (auto [configured, received] : std::initializer_list<std::pair<char const*, char const*>>{
             {"https://mycompany.com:443/sms?x=1", "https://mycompany.com/sms?x=1"},
             {"https://mycompany.com/sms", "https://mycompany.com:443/sms"},
             {"http://mycompany.com:80/sms", "http://mycompany.com/sms"}}) {
        request r;
        r.body = "MessageSid=SM1&Body=hi";
        r.content_type = "application/x-www-form-urlencoded";
        r.url = received;
        r.set("X-Twilio-Signature", twilio_signature(plain_secret, configured, params));
        auto v = verify(inbound_scheme::twilio, plain_secret, r, now);
        ASSERT_TRUE(accepted(v)) << configured << " received as " << received;
        // Another port, or another path, is another URL.
        r.url = std::string(received) + "&y";
        EXPECT_TRUE(refused(verify(inbound_scheme::twilio, plain_secret, r, now), inbound_rejection::signature_mismatch));
    }
    request r;
    r.body = "MessageSid=SM1&Body=hi";
    r.content_type = "application/x-www-form-urlencoded";
    r.url = "https://mycompany.com/sms";
    r.set("X-Twilio-Signature", twilio_signature(plain_secret, "https://mycompany.com:8443/sms", params));
    EXPECT_TRUE(refused(verify(inbound_scheme::twilio, plain_secret, r, now), inbound_rejection::signature_mismatch));
}

TEST(InboundIdentity, TwilioUrlWithBodySha256IsNeverVerifiedAsAForm) {
    // The URL alone is signed for a JSON body; sent again as a form whose parameters sign nothing
    // (an empty pair), the body must still hash to the URL's bodySHA256.
    auto r = twilio_json_request(R"({"MessageSid":"SM1"})");
    ASSERT_TRUE(accepted(verify(inbound_scheme::twilio, plain_secret, r, now)));
    r.content_type = "application/x-www-form-urlencoded";
    for (std::string body : {"&", "=", "MessageSid=SM9"}) {
        r.body = body;
        EXPECT_TRUE(refused(verify(inbound_scheme::twilio, plain_secret, r, now), inbound_rejection::signature_mismatch))
            << body;
    }
}

TEST(InboundIdentity, StandardTypeOrEvent) {
    auto typed = signed_request(inbound_scheme::standard, standard_secret, R"({"type":"user.created","data":{}})");
    auto t = verify(inbound_scheme::standard, standard_secret, typed, now);
    ASSERT_TRUE(accepted(t));
    EXPECT_EQ(t.identity->event_type, "standard.user.created");
    EXPECT_EQ(t.identity->provider_delivery_id, "msg_1");
    EXPECT_EQ(t.identity->timestamp, now);
    auto untyped = signed_request(inbound_scheme::standard, standard_secret, R"({"data":{}})");
    EXPECT_EQ(verify(inbound_scheme::standard, standard_secret, untyped, now).identity->event_type, "standard.event");
    auto odd = signed_request(inbound_scheme::standard, standard_secret, R"({"type":"a b"})");
    EXPECT_TRUE(refused(verify(inbound_scheme::standard, standard_secret, odd, now), inbound_rejection::malformed_body));
}

TEST(InboundIdentity, StandardEd25519V1a) {
    auto key = generate_ed25519_key();
    std::string const body = R"({"type":"ping"})";
    request r;
    r.set("webhook-id", "msg_2").set("webhook-timestamp", std::to_string(now));
    r.set("webhook-signature", sign(key.private_key, "msg_2", now, body).value());
    r.body = body;
    auto v = verify(inbound_scheme::standard, key.public_key, r, now);
    ASSERT_TRUE(accepted(v));
    EXPECT_EQ(v.identity->event_type, "standard.ping");
    r.body = R"({"type":"pong"})";
    EXPECT_TRUE(refused(verify(inbound_scheme::standard, key.public_key, r, now), inbound_rejection::signature_mismatch));
}

TEST(InboundIdentity, SchemeNames) {
    for (auto s : all_schemes) EXPECT_EQ(parse_inbound_scheme(to_string(s)).value(), s);
    EXPECT_FALSE(parse_inbound_scheme("GitHub"));
    EXPECT_FALSE(parse_inbound_scheme(""));
    EXPECT_EQ(to_string(inbound_rejection::stale_timestamp), "stale-timestamp");
    EXPECT_EQ(to_string(inbound_rejection::delivery_id_conflict), "delivery-id-conflict");
}

// ---- Every scheme: tampering, body variants, rotation, bad bodies ----

class EveryScheme : public ::testing::TestWithParam<inbound_scheme> {};
INSTANTIATE_TEST_SUITE_P(Inbound, EveryScheme, ::testing::ValuesIn(all_schemes),
                         [](auto const& info) { return std::string(to_string(info.param)); });

TEST_P(EveryScheme, SignedRequestIsAccepted) {
    auto r = signed_request(GetParam(), secret_for(GetParam()), body_for(GetParam()));
    EXPECT_TRUE(accepted(verify(GetParam(), secret_for(GetParam()), r, now)));
}

TEST_P(EveryScheme, OneByteChangeToBodyIsRefused) {
    auto const body = body_for(GetParam());
    for (std::size_t i = 0; i < body.size(); ++i) {
        auto r = signed_request(GetParam(), secret_for(GetParam()), body);
        r.body[i] = static_cast<char>(r.body[i] ^ 0x01);
        auto v = verify(GetParam(), secret_for(GetParam()), r, now);
        ASSERT_FALSE(v) << "byte " << i;
        ASSERT_TRUE(v.refusal->reason == inbound_rejection::signature_mismatch ||
                    v.refusal->reason == inbound_rejection::malformed_body)
            << "byte " << i << ": " << v.refusal->detail;
    }
}

// Another character of the signature's alphabet that changes the decoded bytes: for base64, bit
// 2 of the 6-bit value, which is data even in the last character before the padding.
char changed(inbound_scheme scheme, char c) {
    bool const base64 = scheme == inbound_scheme::standard || scheme == inbound_scheme::twilio ||
                        scheme == inbound_scheme::shopify;
    if (!base64) return c == 'a' ? 'b' : 'a';
    std::string_view const alphabet = support::b64_alphabet;
    return alphabet[alphabet.find(c) ^ 4];
}

TEST_P(EveryScheme, OneByteChangeToSignatureIsRefused) {
    auto const name = signature_header_of(GetParam());
    auto const original = signed_request(GetParam(), secret_for(GetParam()), body_for(GetParam()));
    auto const sig = signed_request(GetParam(), secret_for(GetParam()), body_for(GetParam())).at(name);
    std::size_t start = 0;  // where the encoded MAC begins
    switch (GetParam()) {
        case inbound_scheme::standard: start = 3; break;  // v1,
        case inbound_scheme::github: start = 7; break;    // sha256=
        case inbound_scheme::stripe: start = sig.find(",v1=") + 4; break;
        case inbound_scheme::slack: start = 3; break;  // v0=
        default: break;
    }
    for (std::size_t i = start; i < sig.size() && sig[i] != '='; ++i) {
        auto r = original;
        r.at(name)[i] = changed(GetParam(), sig[i]);
        auto v = verify(GetParam(), secret_for(GetParam()), r, now);
        ASSERT_TRUE(refused(v, inbound_rejection::signature_mismatch)) << "character " << i << " of " << r.at(name);
    }
}

// Base64 signatures are compared as MAC bytes; a spelling that decodes to the same bytes but that
// no encoder writes (a bit set after the last byte) must still be refused, as comparing the text
// would, and for the same reason as a wrong signature.
::testing::AssertionResult refused_when_respelled(inbound_scheme scheme, std::string const& verify_with,
                                                  request r, std::string const& header) {
    if (auto v = verify(scheme, verify_with, r, now); !accepted(v)) return accepted(v);
    auto& sig = r.at(header);
    std::size_t const pad = sig.ends_with("==") ? 2 : sig.ends_with("=") ? 1 : 0;
    if (pad == 0) return ::testing::AssertionFailure() << "no padding to play with: " << sig;
    auto& last = sig[sig.size() - 1 - pad];
    std::string_view const alphabet = support::b64_alphabet;
    last = alphabet[alphabet.find(last) ^ 1];
    return refused(verify(scheme, verify_with, r, now), inbound_rejection::signature_mismatch);
}

TEST(InboundSignatureVectors, Base64SignaturesMatchAsWrittenNotOnlyAsDecoded) {
    for (auto scheme : {inbound_scheme::standard, inbound_scheme::twilio, inbound_scheme::shopify}) {
        auto r = signed_request(scheme, secret_for(scheme), body_for(scheme));
        EXPECT_TRUE(refused_when_respelled(scheme, secret_for(scheme), r, signature_header_of(scheme))) << to_string(scheme);
    }
    // Standard Webhooks v1a (Ed25519): 64 bytes, so two '=' and four bits after the last byte.
    auto key = generate_ed25519_key();
    auto v1a = signed_request(inbound_scheme::standard, std::string(key.private_key.view()), body_for(inbound_scheme::standard));
    ASSERT_TRUE(v1a.at("webhook-signature").starts_with("v1a,"));
    EXPECT_TRUE(refused_when_respelled(inbound_scheme::standard, key.public_key, v1a, "webhook-signature"));
}

TEST_P(EveryScheme, BodyVariantsAreRefused) {
    auto const body = body_for(GetParam());
    auto r0 = signed_request(GetParam(), secret_for(GetParam()), body);
    std::vector<std::string> variants = {
        body + "\n",                      // trailing newline
        body + "\r\n",                    // CRLF line end
        "\xEF\xBB\xBF" + body,            // a BOM
        " " + body,                       // whitespace
    };
    if (GetParam() == inbound_scheme::twilio) {
        variants.push_back("MessageSid=SM123&From=%2B12349013030&Body=hello+");  // a value changed by a space
    } else {
        // Key order: the same JSON document, serialised differently.
        auto swapped = body;
        auto const comma = swapped.find(',');
        swapped = "{" + swapped.substr(comma + 1, swapped.size() - comma - 2) + "," + swapped.substr(1, comma - 1) + "}";
        variants.push_back(swapped);
        auto spaced = body;
        spaced.replace(spaced.find(':'), 1, ": ");
        variants.push_back(spaced);
    }
    for (auto const& variant : variants) {
        auto r = r0;
        r.body = variant;
        auto v = verify(GetParam(), secret_for(GetParam()), r, now);
        EXPECT_FALSE(v) << variant;
    }
}

TEST_P(EveryScheme, RotationAcceptsEitherSecret) {
    auto const old_secret = secret_for(GetParam());
    auto const new_secret = GetParam() == inbound_scheme::standard ? "whsec_" + support::base64(std::string(32, 'k'))
                                                                   : std::string("whsec_rotated_secret");
    auto const other = GetParam() == inbound_scheme::standard ? "whsec_" + support::base64(std::string(32, 'z'))
                                                              : std::string("whsec_someone_else");
    std::vector<std::string> const both = {old_secret, new_secret};
    auto with_new = signed_request(GetParam(), new_secret, body_for(GetParam()));
    auto with_old = signed_request(GetParam(), old_secret, body_for(GetParam()));
    auto with_other = signed_request(GetParam(), other, body_for(GetParam()));
    EXPECT_TRUE(accepted(verify(GetParam(), both, with_new, now)));
    EXPECT_TRUE(accepted(verify(GetParam(), both, with_old, now)));
    EXPECT_TRUE(refused(verify(GetParam(), both, with_other, now), inbound_rejection::signature_mismatch));
    EXPECT_TRUE(refused(verify(GetParam(), std::vector<std::string>{}, with_new, now),
                        inbound_rejection::signature_mismatch));
}

TEST_P(EveryScheme, WrongSecretOfAnotherLengthIsAMismatch) {
    auto r = signed_request(GetParam(), secret_for(GetParam()), body_for(GetParam()));
    auto const wrong = GetParam() == inbound_scheme::standard ? "whsec_" + support::base64(std::string(64, 'x')) : "x";
    EXPECT_TRUE(refused(verify(GetParam(), wrong, r, now), inbound_rejection::signature_mismatch));
}

/** How a body the scheme cannot read is refused: Twilio signs the decoded form, so a form that
 *  cannot be decoded is signed by nobody (401); the others sign the raw bytes, so such a body was
 *  verified first and is malformed (400). */
inbound_rejection refusal_of_unreadable(inbound_scheme s) {
    return s == inbound_scheme::twilio ? inbound_rejection::signature_mismatch : inbound_rejection::malformed_body;
}

TEST_P(EveryScheme, EmptyBodyIsRefused) {
    auto r = signed_request(GetParam(), secret_for(GetParam()), "");
    EXPECT_TRUE(refused(verify(GetParam(), secret_for(GetParam()), r, now), inbound_rejection::malformed_body));
}

TEST_P(EveryScheme, InvalidUtf8IsRefused) {
    auto const body = GetParam() == inbound_scheme::twilio ? std::string("MessageSid=SM1&Body=\xff\xfe")
                                                           : std::string("{\"type\":\"a\",\"x\":\"\xff\xfe\"}");
    auto r = signed_request(GetParam(), secret_for(GetParam()), body);
    EXPECT_TRUE(refused(verify(GetParam(), secret_for(GetParam()), r, now), refusal_of_unreadable(GetParam())));
}

TEST_P(EveryScheme, DeeplyNestedJsonIsRefused) {
    std::string deep = std::string(100000, '[') + std::string(100000, ']');
    if (GetParam() == inbound_scheme::twilio) deep = "MessageSid=" + std::string(100000, '[');  // '[' is not form text
    auto r = signed_request(GetParam(), secret_for(GetParam()), deep);
    auto v = verify(GetParam(), secret_for(GetParam()), r, now);
    EXPECT_TRUE(refused(v, refusal_of_unreadable(GetParam())));
    auto nested_object = std::string(100000, '{');
    auto r2 = signed_request(GetParam(), secret_for(GetParam()), "{\"a\":" + nested_object);
    EXPECT_FALSE(verify(GetParam(), secret_for(GetParam()), r2, now));
}

TEST_P(EveryScheme, MissingSignatureHeaderIsRefused) {
    auto r = signed_request(GetParam(), secret_for(GetParam()), body_for(GetParam()));
    r.erase(signature_header_of(GetParam()));
    EXPECT_TRUE(refused(verify(GetParam(), secret_for(GetParam()), r, now), inbound_rejection::missing_signature));
}

TEST_P(EveryScheme, HeaderNamesAreCaseInsensitive) {
    auto r = signed_request(GetParam(), secret_for(GetParam()), body_for(GetParam()));
    for (auto& [n, v] : r.headers) std::transform(n.begin(), n.end(), n.begin(), [](char c) { return std::toupper(c); });
    EXPECT_TRUE(accepted(verify(GetParam(), secret_for(GetParam()), r, now)));
}

// ---- Timestamps ----

class TimedScheme : public ::testing::TestWithParam<inbound_scheme> {};
INSTANTIATE_TEST_SUITE_P(Inbound, TimedScheme, ::testing::ValuesIn(timed_schemes),
                         [](auto const& info) { return std::string(to_string(info.param)); });

TEST_P(TimedScheme, Within299SecondsBothWaysIsAccepted) {
    for (std::int64_t offset : {-299, 299, -300, 300, 0}) {
        auto r = signed_request(GetParam(), secret_for(GetParam()), body_for(GetParam()), now + offset);
        EXPECT_TRUE(accepted(verify(GetParam(), secret_for(GetParam()), r, now))) << offset;
    }
}

TEST_P(TimedScheme, Beyond301SecondsBothWaysIsRefused) {
    for (std::int64_t offset : {-301, 301, -100000, 100000}) {
        auto r = signed_request(GetParam(), secret_for(GetParam()), body_for(GetParam()), now + offset);
        EXPECT_TRUE(refused(verify(GetParam(), secret_for(GetParam()), r, now), inbound_rejection::stale_timestamp))
            << offset;
    }
}

TEST_P(TimedScheme, ToleranceIsClampedNeverOff) {
    auto const s = secret_for(GetParam());
    auto at = [&](std::int64_t offset) { return signed_request(GetParam(), s, body_for(GetParam()), now + offset); };
    for (std::int64_t t : {std::int64_t{0}, std::int64_t{-5}, std::numeric_limits<std::int64_t>::min()}) {
        auto one = at(-1), two = at(2);
        EXPECT_TRUE(accepted(verify(GetParam(), s, one, now, t))) << t;  // clamped up to 1 s
        EXPECT_TRUE(refused(verify(GetParam(), s, two, now, t), inbound_rejection::stale_timestamp)) << t;
    }
    for (std::int64_t t : {std::int64_t{100000}, std::numeric_limits<std::int64_t>::max()}) {
        auto edge = at(3600), past = at(-3601);
        EXPECT_TRUE(accepted(verify(GetParam(), s, edge, now, t))) << t;  // clamped down to 3600 s
        EXPECT_TRUE(refused(verify(GetParam(), s, past, now, t), inbound_rejection::stale_timestamp)) << t;
    }
    auto ten = at(-10);
    EXPECT_TRUE(accepted(verify(GetParam(), s, ten, now, 30)));
    EXPECT_TRUE(refused(verify(GetParam(), s, ten, now, 5), inbound_rejection::stale_timestamp));
}

TEST_P(TimedScheme, OneByteChangeToTimestampIsRefused) {
    auto r = signed_request(GetParam(), secret_for(GetParam()), body_for(GetParam()));
    std::string const t = std::to_string(now), changed = std::to_string(now + 1);
    if (GetParam() == inbound_scheme::stripe)
        r.at("Stripe-Signature").replace(2, t.size(), changed);
    else
        r.at(GetParam() == inbound_scheme::standard ? "webhook-timestamp" : "X-Slack-Request-Timestamp") = changed;
    EXPECT_TRUE(refused(verify(GetParam(), secret_for(GetParam()), r, now), inbound_rejection::signature_mismatch));
}

TEST_P(TimedScheme, MalformedTimestampsAreRefused) {
    for (std::string bad : {"", "abc", "12345678901234567890", "-1614265330", "1614265330.5", " 1614265330x",
                            "1614265330000"}) {
        auto r = signed_request(GetParam(), secret_for(GetParam()), body_for(GetParam()));
        if (GetParam() == inbound_scheme::stripe)
            r.at("Stripe-Signature").replace(2, std::to_string(now).size(), bad);
        else
            r.at(GetParam() == inbound_scheme::standard ? "webhook-timestamp" : "X-Slack-Request-Timestamp") = bad;
        EXPECT_TRUE(refused(verify(GetParam(), secret_for(GetParam()), r, now), inbound_rejection::malformed_signature))
            << "'" << bad << "'";
    }
}

TEST_P(TimedScheme, MissingTimestampIsRefused) {
    auto r = signed_request(GetParam(), secret_for(GetParam()), body_for(GetParam()));
    if (GetParam() == inbound_scheme::stripe) {
        auto& h = r.at("Stripe-Signature");
        h = h.substr(h.find(',') + 1);
        EXPECT_TRUE(refused(verify(GetParam(), secret_for(GetParam()), r, now), inbound_rejection::malformed_signature));
    } else {
        r.erase(GetParam() == inbound_scheme::standard ? "webhook-timestamp" : "X-Slack-Request-Timestamp");
        EXPECT_TRUE(refused(verify(GetParam(), secret_for(GetParam()), r, now), inbound_rejection::missing_signature));
    }
}

// ---- Malformed signature headers, scheme by scheme ----

void expect_malformed(inbound_scheme scheme, std::string const& header, std::vector<std::string> const& values) {
    for (auto const& value : values) {
        auto r = signed_request(scheme, secret_for(scheme), body_for(scheme));
        r.set(header, value);
        EXPECT_TRUE(refused(verify(scheme, secret_for(scheme), r, now), inbound_rejection::malformed_signature))
            << header << ": '" << value << "'";
    }
}

std::string const hex64(64, 'a');

TEST(InboundMalformed, Standard) {
    expect_malformed(inbound_scheme::standard, "webhook-signature",
                     {"", "v1", "v1,", "v1,!!!!", "v1,AAAA", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE",
                      "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", "v1a,AAAA", "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                      std::string(5000, ' ')});
    expect_malformed(inbound_scheme::standard, "webhook-id", {"", "has space", std::string(300, 'a'), "ctl\x01"});
    // Unknown versions beside a good entry are skipped.
    auto r = signed_request(inbound_scheme::standard, standard_secret, body_for(inbound_scheme::standard));
    r.at("webhook-signature") = "v2,abc v1,AAAA " + r.at("webhook-signature");
    EXPECT_TRUE(accepted(verify(inbound_scheme::standard, standard_secret, r, now)));
    for (auto const* name : {"webhook-id", "webhook-timestamp"}) {
        auto m = signed_request(inbound_scheme::standard, standard_secret, body_for(inbound_scheme::standard));
        m.erase(name);
        EXPECT_TRUE(refused(verify(inbound_scheme::standard, standard_secret, m, now), inbound_rejection::missing_signature));
    }
}

TEST(InboundMalformed, Stripe) {
    auto const t = "t=" + std::to_string(now);
    expect_malformed(inbound_scheme::stripe, "Stripe-Signature",
                     {"", "v1=" + hex64, "t=abc,v1=" + hex64, "t=12345678901234567890,v1=" + hex64, t,
                      t + ",v0=" + hex64, t + ",v1=" + hex64.substr(1), t + ",v1=" + hex64.substr(2),
                      t + ",v1=" + std::string(64, 'g'), t + ",v1=" + hex64 + "aa", t + "," + t + ",v1=" + hex64,
                      t + ",v1", t + ",,v1=" + hex64, "t=,v1=" + hex64});
}

TEST(InboundMalformed, StripeCountsOnlyV1AndAnyV1Matches) {
    auto r = signed_request(inbound_scheme::stripe, plain_secret, body_for(inbound_scheme::stripe));
    auto& h = r.at("Stripe-Signature");
    auto const good_v1 = h.substr(h.find(",v1="));
    h = "t=" + std::to_string(now) + ",v1=" + std::string(64, 'b') + good_v1 + ",v0=" + std::string(64, 'c') + ",x=y";
    EXPECT_TRUE(accepted(verify(inbound_scheme::stripe, plain_secret, r, now)));
    // A correct MAC under v0 does not count.
    auto v0 = signed_request(inbound_scheme::stripe, plain_secret, body_for(inbound_scheme::stripe));
    auto& h0 = v0.at("Stripe-Signature");
    h0 = "t=" + std::to_string(now) + ",v0=" + h0.substr(h0.find(",v1=") + 4) + ",v1=" + hex64;
    EXPECT_TRUE(refused(verify(inbound_scheme::stripe, plain_secret, v0, now), inbound_rejection::signature_mismatch));
    // The key is the whole secret string: without the whsec_ prefix, nothing matches.
    EXPECT_TRUE(refused(verify(inbound_scheme::stripe, "test_secret", r, now), inbound_rejection::signature_mismatch));
}

TEST(InboundMalformed, Slack) {
    expect_malformed(inbound_scheme::slack, "X-Slack-Signature",
                     {"", hex64, "v1=" + hex64, "v0=" + hex64.substr(1), "v0=" + hex64.substr(2),
                      "v0=" + std::string(64, 'z'), "v0=" + hex64 + "0"});
}

TEST(InboundMalformed, GitHub) {
    expect_malformed(inbound_scheme::github, "X-Hub-Signature-256",
                     {"", hex64, "sha1=" + std::string(40, 'a'), "sha256=" + hex64.substr(1), "sha256=" + hex64.substr(2),
                      "sha256=" + std::string(64, 'x'), "sha256=" + hex64 + "00"});
    expect_malformed(inbound_scheme::github, "X-GitHub-Event", {"", "a b", "x/y"});
    expect_malformed(inbound_scheme::github, "X-GitHub-Delivery", {"", std::string(257, 'd')});
    for (auto const* name : {"X-GitHub-Delivery", "X-GitHub-Event"}) {
        auto r = signed_request(inbound_scheme::github, plain_secret, body_for(inbound_scheme::github));
        r.erase(name);
        EXPECT_TRUE(refused(verify(inbound_scheme::github, plain_secret, r, now), inbound_rejection::missing_signature));
    }
}

TEST(InboundMalformed, Shopify) {
    expect_malformed(inbound_scheme::shopify, "X-Shopify-Hmac-Sha256",
                     {"", "!!!!", "plW8VGqq0nDMIEhDqaNNW99asdUCy7EIqLZVcQwtAZ0", "AAAA", support::base64(std::string(20, 'x')),
                      "plW8VGqq0nDMIEhDqaNNW99asdUCy7EIqLZVcQwtAZ0=="});
    expect_malformed(inbound_scheme::shopify, "X-Shopify-Topic", {"", "orders create"});
    expect_malformed(inbound_scheme::shopify, "X-Shopify-Webhook-Id", {""});
    for (auto const* name : {"X-Shopify-Webhook-Id", "X-Shopify-Topic"}) {
        auto r = signed_request(inbound_scheme::shopify, plain_secret, body_for(inbound_scheme::shopify));
        r.erase(name);
        EXPECT_TRUE(refused(verify(inbound_scheme::shopify, plain_secret, r, now), inbound_rejection::missing_signature));
    }
}

TEST(InboundMalformed, Twilio) {
    expect_malformed(inbound_scheme::twilio, "X-Twilio-Signature",
                     {"", "!!!!", "0/KCTR6DLpKmkAf8muzZqo1nDgQ", support::base64(std::string(32, 'x')), "AAAA"});
}

TEST(InboundMalformed, TwilioUrlAndForm) {
    auto r = signed_request(inbound_scheme::twilio, plain_secret, body_for(inbound_scheme::twilio));
    // One byte of the URL changed, the query dropped, or no URL at all.
    for (std::string url : {"https://mycompany.com/myapp.php?foo=1&bar=3", "https://mycompany.com/myapp.php",
                            "http://mycompany.com/myapp.php?foo=1&bar=2", "", "not a url"}) {
        auto copy = r;
        copy.url = url;
        EXPECT_TRUE(refused(verify(inbound_scheme::twilio, plain_secret, copy, now), inbound_rejection::signature_mismatch))
            << url;
    }
    auto bad_form = r;
    bad_form.body = "MessageSid=SM1&Body=%zz";
    // Not a form, so nothing a Twilio signature covers: a bad signature (401), not a bad body.
    EXPECT_TRUE(refused(verify(inbound_scheme::twilio, plain_secret, bad_form, now), inbound_rejection::signature_mismatch));
}

TEST(InboundMalformed, NonJsonBodiesAreRefusedAfterVerification) {
    for (auto scheme : {inbound_scheme::standard, inbound_scheme::github, inbound_scheme::stripe, inbound_scheme::slack,
                        inbound_scheme::shopify}) {
        for (std::string body : {"not json", "[1,2]", "\"text\"", "{\"a\":1", "{\"a\":1}{}", "{\"type\":\"x\"}\x01"}) {
            auto r = signed_request(scheme, secret_for(scheme), body);
            EXPECT_TRUE(refused(verify(scheme, secret_for(scheme), r, now), inbound_rejection::malformed_body))
                << to_string(scheme) << ": " << body;
        }
    }
    // Stripe needs the event id and type; Slack JSON needs a type.
    for (std::string body : {R"({"type":"charge.succeeded"})", R"({"id":"evt_1"})", R"({"id":7,"type":"x"})",
                             R"({"id":"evt 1","type":"x"})"}) {
        auto r = signed_request(inbound_scheme::stripe, plain_secret, body);
        EXPECT_TRUE(refused(verify(inbound_scheme::stripe, plain_secret, r, now), inbound_rejection::malformed_body))
            << body;
    }
    auto untyped = signed_request(inbound_scheme::slack, plain_secret, R"({"event":{}})");
    EXPECT_TRUE(refused(verify(inbound_scheme::slack, plain_secret, untyped, now), inbound_rejection::malformed_body));
}

TEST(InboundMalformed, RefusalDetailsNeverRepeatTheSecret) {
    for (auto scheme : all_schemes) {
        auto const canary = scheme == inbound_scheme::standard ? "whsec_" + support::base64(std::string(32, 'c'))
                                                               : "whsec_canary_" + std::string(20, 'q');
        auto r = signed_request(scheme, secret_for(scheme), body_for(scheme));
        auto v = verify(scheme, canary, r, now);
        ASSERT_TRUE(refused(v, inbound_rejection::signature_mismatch)) << to_string(scheme);
        EXPECT_EQ(v.refusal->detail.find(canary.substr(6)), std::string::npos) << v.refusal->detail;
    }
}

}  // namespace
