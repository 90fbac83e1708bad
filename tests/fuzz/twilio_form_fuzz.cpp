// Twilio: X-Twilio-Signature, the URL called, a content type, then the (form) body.
#include <integration/services/inbound_signature.hpp>

#include "fuzz_input.hpp"

#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    using namespace integration;
    using namespace integration::webhooks;
    static secret_bytes const secrets[] = {secret_bytes("12345")};
    auto const in = fuzz::split<3>(data, size);
    header_field const headers[] = {{"X-Twilio-Signature", in.line[0]}};
    inbound_request const req{headers, in.body, in.line[1], in.line[2]};
    auto const v = verify_inbound(inbound_scheme::twilio, secrets, req, 1614265330);
    if (v.identity.has_value() == v.refusal.has_value()) std::abort();
    return 0;
}
