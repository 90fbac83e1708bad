// Stripe-Signature (t=...,v1=...), a content type, then the body.
#include <integration/services/inbound_signature.hpp>

#include "fuzz_input.hpp"

#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    using namespace integration;
    using namespace integration::webhooks;
    static secret_bytes const secrets[] = {secret_bytes("whsec_test_secret")};
    auto const in = fuzz::split<2>(data, size);
    header_field const headers[] = {{"Stripe-Signature", in.line[0]}};
    inbound_request const req{headers, in.body, "", in.line[1]};
    auto const v = verify_inbound(inbound_scheme::stripe, secrets, req, 1614265330);
    if (v.identity.has_value() == v.refusal.has_value()) std::abort();
    return 0;
}
