// The form decoder's scan of raw bytes (src/detail/form.cpp): each scan this CPU supports (AVX2,
// SSE2, portable) against the one-byte-at-a-time definition, at every position and length around
// the vector width, and the decoder with escapes and `+` across block edges against a plain
// decoder written here.
#include "detail/form.hpp"

#include <gtest/gtest.h>

#include <cctype>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace integration::testing {
namespace {

using detail::form_params;
using detail::form_scan;
using detail::form_scan_supported;
using detail::raw_run;
using detail::raw_run_scalar;

// Every raw byte, cycled: a body of them exercises each byte class in each lane.
std::string const raw_alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$'()*,;:@/?=";

std::string raw_text(std::size_t n, std::size_t shift = 0) {
    std::string s(n, ' ');
    for (std::size_t i = 0; i < n; ++i) s[i] = raw_alphabet[(i + shift) % raw_alphabet.size()];
    return s;
}

// Each case runs once per scan; a scan this CPU cannot run is skipped, not failed.
class FormScan : public ::testing::TestWithParam<form_scan> {
protected:
    void SetUp() override {
        if (!form_scan_supported(GetParam())) GTEST_SKIP() << "this CPU cannot run this scan";
    }
    std::size_t scan(std::string_view text) const { return raw_run(text, GetParam()); }
};

INSTANTIATE_TEST_SUITE_P(EveryVariant, FormScan, ::testing::Values(form_scan::portable, form_scan::sse2, form_scan::avx2),
                         [](::testing::TestParamInfo<form_scan> const& info) {
                             switch (info.param) {
                             case form_scan::portable: return "portable";
                             case form_scan::sse2: return "sse2";
                             case form_scan::avx2: return "avx2";
                             }
                             return "unknown";
                         });

TEST(FormScanVariants, ThePortableScanIsAlwaysSupportedAndTheDefaultFindsTheFirstIllegalByte) {
    EXPECT_TRUE(form_scan_supported(form_scan::portable));
#if defined(__SSE2__)
    EXPECT_TRUE(form_scan_supported(form_scan::sse2));
#endif
    // The default (the fastest this CPU runs) is what the decoder uses in production.
    auto text = raw_text(100);
    text[77] = '%';
    EXPECT_EQ(raw_run(text), 77u);
}

// The bytes the definition calls raw, by value: exactly the alphabet above.
TEST_P(FormScan, EveryByteValueIsClassifiedAsTheDefinitionSays) {
    for (int c = 0; c < 256; ++c) {
        std::string const one(1, static_cast<char>(c));
        bool const raw = raw_alphabet.find(static_cast<char>(c)) != std::string::npos;
        EXPECT_EQ(raw_run_scalar(one), raw ? 1u : 0u) << "byte " << c;
        // In a 64-byte block, in lane 0 and lane 15 of a vector, and in the tail.
        for (std::size_t at : {std::size_t{0}, std::size_t{15}, std::size_t{16}, std::size_t{63}}) {
            auto text = raw_text(64);
            text[at] = static_cast<char>(c);
            EXPECT_EQ(scan(text), raw_run_scalar(text)) << "byte " << c << " at " << at;
            EXPECT_EQ(scan(text), raw ? 64u : at) << "byte " << c << " at " << at;
        }
    }
}

TEST_P(FormScan, AnIllegalByteAtEveryPositionOfA64ByteBodyIsFound) {
    // A sample of what form encoding never leaves raw: controls, space, the escapes, DEL, UTF-8.
    static constexpr char ascii[] = "\0\t\n \"#%&+<>[\\]^`{|}\x7f";
    std::string const illegal = std::string(ascii, sizeof ascii - 1) + "\x80\xc3\xff";
    for (char bad : illegal) {
        for (std::size_t at = 0; at < 64; ++at) {
            auto text = raw_text(64, at);
            text[at] = bad;
            ASSERT_EQ(scan(text), at) << "byte " << int(static_cast<unsigned char>(bad)) << " at " << at;
            ASSERT_EQ(raw_run_scalar(text), at);
            // A second illegal byte after the first changes nothing.
            if (at + 1 < 64) {
                text[63] = bad;
                ASSERT_EQ(scan(text), at);
            }
        }
    }
}

TEST_P(FormScan, LengthsAroundTheVectorWidthAtEveryAlignment) {
    // The scans read 8, 16, 32 and 64 bytes at a time and the last 16 again: lengths 0-40 and 60-70, from
    // every offset in a buffer, with an illegal byte just past the end that must not be counted.
    std::string buffer(256, '&');
    for (std::size_t offset = 0; offset < 16; ++offset) {
        for (std::size_t n = 0; n <= 70; n = n == 40 ? 60 : n + 1) {
            auto const body = raw_text(n, offset);
            buffer.replace(offset, n, body);
            buffer[offset + n] = '&';
            std::string_view const text(buffer.data() + offset, n);
            ASSERT_EQ(scan(text), n) << "length " << n << " at offset " << offset;
            ASSERT_EQ(raw_run_scalar(text), n);
            if (n > 0) {
                buffer[offset + n - 1] = '%';  // the last byte illegal
                ASSERT_EQ(scan(text), n - 1) << "length " << n << " at offset " << offset;
                buffer[offset] = '+';  // the first too
                ASSERT_EQ(scan(text), 0u) << "length " << n << " at offset " << offset;
            }
        }
    }
}

// The pairs a plain decoder reads from `body`, or nullopt for a broken escape or an illegal byte.
std::optional<std::vector<std::pair<std::string, std::string>>> plain_decode(std::string_view body) {
    auto decode = [](std::string_view s) -> std::optional<std::string> {
        std::string out;
        for (std::size_t i = 0; i < s.size(); ++i) {
            if (s[i] == '+') {
                out += ' ';
            } else if (s[i] == '%') {
                if (i + 2 >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[i + 1])) ||
                    !std::isxdigit(static_cast<unsigned char>(s[i + 2])))
                    return std::nullopt;
                out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
                i += 2;
            } else if (raw_run_scalar(s.substr(i, 1)) == 1) {
                out += s[i];
            } else {
                return std::nullopt;
            }
        }
        return out;
    };
    std::vector<std::pair<std::string, std::string>> pairs;
    for (std::size_t at = 0; at < body.size();) {
        auto const end = std::min(body.find('&', at), body.size());
        auto const pair = body.substr(at, end - at);
        at = end + 1;
        if (pair.empty()) continue;
        auto const eq = pair.find('=');
        auto name = decode(pair.substr(0, eq));
        auto value = decode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
        if (!name || !value) return std::nullopt;
        pairs.emplace_back(std::move(*name), std::move(*value));
    }
    return pairs;
}

std::optional<std::vector<std::pair<std::string, std::string>>> decoded(std::string_view body, form_scan how) {
    auto params = form_params(body, how);
    if (!params) return std::nullopt;
    std::vector<std::pair<std::string, std::string>> out;
    for (auto const& [k, v] : *params) out.emplace_back(k, v);
    return out;
}

TEST_P(FormScan, EscapesAndPlusAcrossBlockEdgesDecodeAsTheDefinitionSays) {
    // Each piece placed so that it starts at every position from 0 to 80 of a value: it straddles
    // the 16- and 64-byte edges and the final overlapping load.
    for (std::string const piece : {"%41", "+", "%2B%2b", "++", "%e2%82%ac", "%4", "%", "%zz", "&x=", "=", " "}) {
        for (std::size_t at = 0; at <= 80; ++at) {
            for (std::size_t tail : {std::size_t{0}, std::size_t{1}, std::size_t{17}, std::size_t{70}}) {
                auto const body = "Body=" + raw_text(at) + piece + raw_text(tail, 7) + "&To=%2B1";
                auto const expected = plain_decode(body);
                auto const got = decoded(body, GetParam());
                ASSERT_EQ(got.has_value(), expected.has_value()) << body;
                if (expected) {
                    ASSERT_EQ(*got, *expected) << body;
                }
            }
        }
    }
}

}  // namespace
}  // namespace integration::testing
