// The one-header HMAC schemes: the first line names the scheme (github, slack or shopify), then
// the signature header, two more headers (GitHub: delivery and event; Slack: the timestamp;
// Shopify: webhook id and topic), a content type, then the body.
#include <integration/services/inbound_signature.hpp>

#include "fuzz_input.hpp"

#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    using namespace integration;
    using namespace integration::webhooks;
    auto const in = fuzz::split<5>(data, size);
    auto const scheme = in.line[0] == "slack" ? inbound_scheme::slack
                        : in.line[0] == "shopify" ? inbound_scheme::shopify
                                                  : inbound_scheme::github;
    static secret_bytes const github[] = {secret_bytes("It's a Secret to Everybody")};
    static secret_bytes const slack[] = {secret_bytes("8f742231b10e8888abcd99yyyzzz85a5")};
    static secret_bytes const shopify[] = {secret_bytes("shop-secret"), secret_bytes("shop-secret-2")};
    auto const secrets = scheme == inbound_scheme::slack     ? std::span<secret_bytes const>(slack)
                         : scheme == inbound_scheme::shopify ? std::span<secret_bytes const>(shopify)
                                                             : std::span<secret_bytes const>(github);
    header_field headers[3];
    if (scheme == inbound_scheme::github) {
        headers[0] = {"X-Hub-Signature-256", in.line[1]};
        headers[1] = {"X-GitHub-Delivery", in.line[2]};
        headers[2] = {"X-GitHub-Event", in.line[3]};
    } else if (scheme == inbound_scheme::slack) {
        headers[0] = {"X-Slack-Signature", in.line[1]};
        headers[1] = {"X-Slack-Request-Timestamp", in.line[2]};
        headers[2] = {"X-Unused", in.line[3]};
    } else {
        headers[0] = {"X-Shopify-Hmac-Sha256", in.line[1]};
        headers[1] = {"X-Shopify-Webhook-Id", in.line[2]};
        headers[2] = {"X-Shopify-Topic", in.line[3]};
    }
    inbound_request const req{headers, in.body, "", in.line[4]};
    auto const v = verify_inbound(scheme, secrets, req, 1531420618);
    if (v.identity.has_value() == v.refusal.has_value()) std::abort();
    return 0;
}
