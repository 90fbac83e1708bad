// Standard Webhooks (and Svix) headers: webhook-id, webhook-timestamp, webhook-signature, a
// content type, then the body. The first byte of the id line chooses svix-* names when it is 's'.
#include <integration/services/inbound_signature.hpp>

#include "fuzz_input.hpp"

#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    using namespace integration;
    using namespace integration::webhooks;
    static secret_bytes const secrets[] = {secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
                                           secret_bytes("whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")};
    auto const in = fuzz::split<4>(data, size);
    bool const svix = !in.line[0].empty() && in.line[0].front() == 's';
    header_field const headers[] = {{svix ? "svix-id" : "webhook-id", in.line[0]},
                                    {svix ? "svix-timestamp" : "webhook-timestamp", in.line[1]},
                                    {svix ? "svix-signature" : "webhook-signature", in.line[2]}};
    inbound_request const req{headers, in.body, "", in.line[3]};
    auto const v = verify_inbound(inbound_scheme::standard, secrets, req, 1614265330);
    if (v.identity.has_value() == v.refusal.has_value()) std::abort();  // exactly one of the two
    return 0;
}
