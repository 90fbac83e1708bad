#include <integration/core/context.hpp>
#include <integration/core/id.hpp>

namespace integration {
namespace {

std::string random_hex(std::size_t bytes) {
    static constexpr char hex[] = "0123456789abcdef";
    unsigned char buf[16];
    std::string out;
    do {
        id_bytes(buf, bytes);
        out.clear();
        for (std::size_t i = 0; i < bytes; ++i) {
            out += hex[buf[i] >> 4];
            out += hex[buf[i] & 15];
        }
    } while (out.find_first_not_of('0') == std::string::npos);  // all-zero ids are invalid in W3C
    return out;
}

bool lower_hex(std::string_view s) {
    if (s.find_first_not_of("0123456789abcdef") != std::string_view::npos) return false;
    return s.find_first_not_of('0') != std::string_view::npos;
}

}  // namespace

trace_context trace_context::generate() { return {random_hex(16), random_hex(8)}; }

trace_context trace_context::child() const { return {trace_id, random_hex(8)}; }

std::string trace_context::traceparent() const { return "00-" + trace_id + "-" + span_id + "-01"; }

result<trace_context> trace_context::parse_traceparent(std::string_view h) {
    if (h.size() != 55 || h.substr(0, 3) != "00-" || h[35] != '-' || h[52] != '-' ||
        !lower_hex(h.substr(3, 32)) || !lower_hex(h.substr(36, 16)))
        return error{errc::invalid_argument,
                     "traceparent must look like 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>"};
    return trace_context{std::string(h.substr(3, 32)), std::string(h.substr(36, 16))};
}

request_context request_context::for_tenant(std::string tenant, std::string actor) {
    request_context c;
    c.tenant_id = std::move(tenant);
    c.actor = std::move(actor);
    c.trace = trace_context::generate();
    return c;
}

result<void> validate_tenant_id(std::string_view t) {
    // "." and ".." would name another folder in a store that keeps a folder per tenant.
    if (t.empty() || t.size() > 64 || t == "." || t == ".." ||
        t.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") !=
            std::string_view::npos)
        return error{errc::invalid_argument, "tenantId must be 1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-', and not '.' or '..'"};
    return {};
}

}  // namespace integration
