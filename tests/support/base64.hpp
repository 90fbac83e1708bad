#ifndef INTEGRATION_TESTS_SUPPORT_BASE64_HPP
#define INTEGRATION_TESTS_SUPPORT_BASE64_HPP

// Base64 and base64url for tests that look for encoded secrets or read a JWT's payload.

#include <cstring>
#include <string>
#include <string_view>

namespace integration::testing {

inline constexpr char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

inline std::string base64(std::string_view in, bool url = false) {
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
inline std::string unbase64(std::string_view in) {
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

}  // namespace integration::testing

#endif
