// The cost of verifying an inbound webhook, per scheme, at 1 KiB and 16 KiB bodies:
//   verify/<scheme>/<bytes>     - verify_inbound: headers parsed, signature checked in constant
//                                 time, timestamp checked, identity and event type derived (the
//                                 body parsed as JSON, or as a form for Twilio)
//   signature/<scheme>/<bytes>  - check_inbound_signature: the same without reading the body
//   raw_hmac_sha256/<bytes>     - baseline: one OpenSSL HMAC-SHA256 over the same bytes with the
//                                 key already set, as `openssl speed -hmac sha256` measures it
// bench/inbound_verify.sh runs this next to `openssl speed` and prints the ratios.

#include <integration/services/inbound_signature.hpp>
#include <integration/services/webhook_signature.hpp>

#include "support/base64.hpp"
#include "support/hmac.hpp"

#include <benchmark/benchmark.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

using namespace integration;
using namespace integration::webhooks;

namespace {

constexpr std::int64_t now = 1700000000;

using integration::testing::base64;
using integration::testing::hex;
using integration::testing::raw_hmac;

// A body of exactly `size` bytes: a JSON event, or a Twilio SMS form.
std::string body_of(inbound_scheme scheme, std::size_t size) {
    if (scheme == inbound_scheme::twilio) {
        std::string form = "MessageSid=SM1&From=%2B15005550006&Body=";
        return form + std::string(size - form.size(), 'x');
    }
    std::string head = R"({"id":"evt_1","type":"charge.succeeded","action":"opened","pad":")";
    return head + std::string(size - head.size() - 2, 'x') + "\"}";
}

struct signed_request {
    std::vector<std::pair<std::string, std::string>> headers;
    std::vector<header_field> fields;
    std::string body, url, content_type = "application/json";
    secret_bytes secret;

    inbound_request view() {
        fields.clear();
        for (auto const& [n, v] : headers) fields.push_back({n, v});
        return {fields, body, url, content_type};
    }
};

signed_request make(inbound_scheme scheme, std::size_t size) {
    signed_request r;
    r.body = body_of(scheme, size);
    auto const t = std::to_string(now);
    std::string const key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    r.secret = secret_bytes(key);
    switch (scheme) {
        case inbound_scheme::standard:
            r.headers = {{"webhook-id", "msg_1"}, {"webhook-timestamp", t},
                         {"webhook-signature", sign(r.secret, "msg_1", now, r.body).value()}};
            break;
        case inbound_scheme::github:
            r.headers = {{"X-GitHub-Delivery", "d1"}, {"X-GitHub-Event", "issues"},
                         {"X-Hub-Signature-256", "sha256=" + hex(raw_hmac(EVP_sha256(), key, r.body))}};
            break;
        case inbound_scheme::stripe:
            r.headers = {{"Stripe-Signature", "t=" + t + ",v1=" + hex(raw_hmac(EVP_sha256(), key, t + "." + r.body))}};
            break;
        case inbound_scheme::slack:
            r.headers = {{"X-Slack-Request-Timestamp", t},
                         {"X-Slack-Signature", "v0=" + hex(raw_hmac(EVP_sha256(), key, "v0:" + t + ":" + r.body))}};
            break;
        case inbound_scheme::twilio: {
            r.url = "https://example.com/twilio/sms";
            r.content_type = "application/x-www-form-urlencoded";
            std::string signed_text = r.url + "Body" + std::string(size - 40, 'x') + "From+15005550006MessageSidSM1";
            r.headers = {{"X-Twilio-Signature", base64(raw_hmac(EVP_sha1(), key, signed_text))}};
            break;
        }
        case inbound_scheme::shopify:
            r.headers = {{"X-Shopify-Webhook-Id", "w1"}, {"X-Shopify-Topic", "orders/create"},
                         {"X-Shopify-Hmac-Sha256", base64(raw_hmac(EVP_sha256(), key, r.body))}};
            break;
    }
    return r;
}

void verify(benchmark::State& state, inbound_scheme scheme) {
    auto r = make(scheme, static_cast<std::size_t>(state.range(0)));
    auto const req = r.view();
    if (!verify_inbound(scheme, {&r.secret, 1}, req, now)) {
        state.SkipWithError("the request does not verify");
        return;
    }
    for (auto _ : state) benchmark::DoNotOptimize(verify_inbound(scheme, {&r.secret, 1}, req, now));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}

void signature(benchmark::State& state, inbound_scheme scheme) {
    auto r = make(scheme, static_cast<std::size_t>(state.range(0)));
    auto const req = r.view();
    if (check_inbound_signature(scheme, {&r.secret, 1}, req, now)) {
        state.SkipWithError("the request does not verify");
        return;
    }
    for (auto _ : state) benchmark::DoNotOptimize(check_inbound_signature(scheme, {&r.secret, 1}, req, now));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}

void raw_hmac_sha256(benchmark::State& state) {
    auto const body = body_of(inbound_scheme::github, static_cast<std::size_t>(state.range(0)));
    std::string key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    EVP_MAC* m = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    EVP_MAC_CTX* c = EVP_MAC_CTX_new(m);
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_construct_end()};
    EVP_MAC_init(c, reinterpret_cast<unsigned char const*>(key.data()), key.size(), params);
    unsigned char out[32];
    for (auto _ : state) {
        std::size_t n = 0;
        EVP_MAC_init(c, nullptr, 0, nullptr);  // the same key again, as openssl speed does
        EVP_MAC_update(c, reinterpret_cast<unsigned char const*>(body.data()), body.size());
        EVP_MAC_final(c, out, &n, sizeof out);
        benchmark::DoNotOptimize(out);
    }
    EVP_MAC_CTX_free(c);
    EVP_MAC_free(m);
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}

}  // namespace

BENCHMARK(raw_hmac_sha256)->Arg(1024)->Arg(16384);
BENCHMARK_CAPTURE(verify, standard, inbound_scheme::standard)->Arg(1024)->Arg(16384);
BENCHMARK_CAPTURE(verify, github, inbound_scheme::github)->Arg(1024)->Arg(16384);
BENCHMARK_CAPTURE(verify, stripe, inbound_scheme::stripe)->Arg(1024)->Arg(16384);
BENCHMARK_CAPTURE(verify, slack, inbound_scheme::slack)->Arg(1024)->Arg(16384);
BENCHMARK_CAPTURE(verify, twilio, inbound_scheme::twilio)->Arg(1024)->Arg(16384);
BENCHMARK_CAPTURE(verify, shopify, inbound_scheme::shopify)->Arg(1024)->Arg(16384);
BENCHMARK_CAPTURE(signature, standard, inbound_scheme::standard)->Arg(1024)->Arg(16384);
BENCHMARK_CAPTURE(signature, github, inbound_scheme::github)->Arg(1024)->Arg(16384);
BENCHMARK_CAPTURE(signature, stripe, inbound_scheme::stripe)->Arg(1024)->Arg(16384);
BENCHMARK_CAPTURE(signature, slack, inbound_scheme::slack)->Arg(1024)->Arg(16384);
BENCHMARK_CAPTURE(signature, twilio, inbound_scheme::twilio)->Arg(1024)->Arg(16384);
BENCHMARK_CAPTURE(signature, shopify, inbound_scheme::shopify)->Arg(1024)->Arg(16384);

BENCHMARK_MAIN();
