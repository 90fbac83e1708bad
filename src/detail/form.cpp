#include "form.hpp"

#include <algorithm>
#include <array>
#include <cstring>

namespace integration::detail {

namespace {

// The bytes form encoding leaves raw (RFC 3986 query characters), as a table.
constexpr auto raw_bytes = [] {
    std::array<unsigned char, 256> t{};
    for (int c = 'a'; c <= 'z'; ++c) t[static_cast<unsigned char>(c)] = 1;
    for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<unsigned char>(c)] = 1;
    for (int c = '0'; c <= '9'; ++c) t[static_cast<unsigned char>(c)] = 1;
    for (char c : std::string_view("-._~!$'()*,;:@/?=")) t[static_cast<unsigned char>(c)] = 1;
    return t;
}();

unsigned is_raw(char c) noexcept { return raw_bytes[static_cast<unsigned char>(c)]; }

// The length of the run of raw bytes at the start of `text`. Eight bytes are looked up per
// step without a branch each: a value is mostly one long run (a message body).
std::size_t raw_run(std::string_view text) noexcept {
    std::size_t i = 0;
    auto const* p = text.data();
    for (; i + 8 <= text.size(); i += 8) {
        unsigned all = 1;
        for (std::size_t k = 0; k < 8; ++k) all &= is_raw(p[i + k]);
        if (!all) break;
    }
    while (i < text.size() && is_raw(p[i]) != 0) ++i;
    return i;
}

int nibble(char c) noexcept {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

// Percent-decodes `text` (`+` is a space) after its first `raw` bytes into `out`; returns the
// bytes written, or nullopt on a broken escape or a byte form encoding never leaves raw.
std::optional<std::size_t> decode_into(std::string_view text, std::size_t raw, char* out) {
    std::memcpy(out, text.data(), raw);
    std::size_t o = raw;
    for (std::size_t i = raw; i < text.size();) {
        char const c = text[i];
        if (c == '+') {
            out[o++] = ' ';
            ++i;
        } else if (c == '%') {
            int const hi = i + 2 < text.size() ? nibble(text[i + 1]) : -1;
            int const lo = hi >= 0 ? nibble(text[i + 2]) : -1;
            if (lo < 0) return std::nullopt;
            out[o++] = static_cast<char>(hi << 4 | lo);
            i += 3;
        } else {
            return std::nullopt;
        }
        auto const run = raw_run(text.substr(i));
        std::memcpy(out + o, text.data() + i, run);
        o += run;
        i += run;
    }
    return o;
}

}  // namespace

std::optional<form_fields> form_params(std::string_view body) {
    form_fields out;
    // One name or value: a view of the body when it has nothing to decode, else decoded into
    // the buffer (decoding never lengthens, so the body's size always suffices).
    auto part = [&](std::string_view text) -> std::optional<std::string_view> {
        auto const raw = raw_run(text);
        if (raw == text.size()) return text;
        if (!out.decoded_) out.decoded_ = std::make_unique_for_overwrite<char[]>(body.size());
        char* const at = out.decoded_.get() + out.used_;
        auto const n = decode_into(text, raw, at);
        if (!n) return std::nullopt;
        out.used_ += *n;
        return std::string_view(at, *n);
    };
    for (std::size_t at = 0; at < body.size();) {
        auto const end = std::min(body.find('&', at), body.size());
        auto const pair = body.substr(at, end - at);
        at = end + 1;
        if (pair.empty()) continue;
        auto const eq = pair.find('=');
        auto name = part(pair.substr(0, eq));
        auto value = part(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
        if (!name || !value) return std::nullopt;
        out.pairs_.emplace_back(*name, *value);
    }
    return out;
}

}  // namespace integration::detail
