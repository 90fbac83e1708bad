#include "form.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__SSE2__) && defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define INTEGRATION_FORM_AVX2 1  // compiled for every x86-64, used where the CPU has AVX2
#endif

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

#if defined(__SSE2__)
// 0xff in each byte of `x` that form encoding leaves raw, 0 in the others. The compares are
// signed: bytes from 0x80 up are negative, below every bound, so never raw. Inlined, so that the
// constants stay in registers across a loop (called as a function, it is half the scan's time).
[[gnu::always_inline]] inline __m128i raw_mask(__m128i x) noexcept {
    auto const all = [](char c) { return _mm_set1_epi8(c); };
    auto const between = [&](__m128i v, char lo, char hi) {
        return _mm_and_si128(_mm_cmpgt_epi8(v, all(static_cast<char>(lo - 1))),
                             _mm_cmplt_epi8(v, all(static_cast<char>(hi + 1))));
    };
    auto const is = [&](char c) { return _mm_cmpeq_epi8(x, all(c)); };
    // Setting bit 5 maps A-Z onto a-z, and nothing else onto them.
    __m128i const letters = between(_mm_or_si128(x, all(0x20)), 'a', 'z');
    // ' ( ) * , - . / 0-9 : ; = ? @ are 0x27-0x40 without + < >.
    __m128i const middle =
        _mm_andnot_si128(_mm_or_si128(_mm_or_si128(is('+'), is('<')), is('>')), between(x, '\'', '@'));
    __m128i const others = _mm_or_si128(_mm_or_si128(is('!'), is('$')), _mm_or_si128(is('_'), is('~')));
    return _mm_or_si128(letters, _mm_or_si128(middle, others));
}

// Where the first byte of the 16 at `p` that is not raw is; 16 when they all are.
[[gnu::always_inline]] inline std::size_t raw_prefix16(char const* p) noexcept {
    auto const m = static_cast<unsigned>(_mm_movemask_epi8(raw_mask(_mm_loadu_si128(reinterpret_cast<__m128i const*>(p)))));
    return static_cast<std::size_t>(std::countr_one(m));
}
#endif

#if defined(INTEGRATION_FORM_AVX2)
// The raw bytes by nibbles, for a table lookup of 32 bytes at once: a byte is raw when its low
// nibble's entry has the bit of its high nibble's row (rows 2-7 hold every raw byte; the others
// have no bit). Built from `raw_bytes`, so the two cannot disagree.
constexpr auto low_nibble_rows = [] {
    std::array<unsigned char, 16> t{};
    for (int hi = 2; hi < 8; ++hi)
        for (int lo = 0; lo < 16; ++lo)
            if (raw_bytes[static_cast<std::size_t>(hi * 16 + lo)]) t[static_cast<std::size_t>(lo)] |= 1u << (hi - 2);
    return t;
}();
constexpr std::array<unsigned char, 16> high_nibble_row = {0, 0, 1, 2, 4, 8, 16, 32, 0, 0, 0, 0, 0, 0, 0, 0};

// Where the first byte that is not raw is, or the end of the last whole 32 bytes when all are.
[[gnu::target("avx2")]] std::size_t raw_run_avx2(char const* p, std::size_t n) noexcept {
    __m256i const lows = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<__m128i const*>(low_nibble_rows.data())));
    __m256i const highs = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<__m128i const*>(high_nibble_row.data())));
    __m256i const nibble = _mm256_set1_epi8(0x0f);
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i const x = _mm256_loadu_si256(reinterpret_cast<__m256i const*>(p + i));
        __m256i const lo = _mm256_shuffle_epi8(lows, _mm256_and_si256(x, nibble));
        __m256i const hi = _mm256_shuffle_epi8(highs, _mm256_and_si256(_mm256_srli_epi16(x, 4), nibble));
        __m256i const other = _mm256_cmpeq_epi8(_mm256_and_si256(lo, hi), _mm256_setzero_si256());
        if (auto const m = static_cast<unsigned>(_mm256_movemask_epi8(other)); m != 0) return i + std::countr_zero(m);
    }
    return i;
}
#endif

// Eight bytes are looked up per step without a branch each, then one at a time.
std::size_t raw_run_portable(char const* p, std::size_t n) noexcept {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        unsigned all = 1;
        for (std::size_t k = 0; k < 8; ++k) all &= is_raw(p[i + k]);
        if (!all) break;
    }
    while (i < n && is_raw(p[i]) != 0) ++i;
    return i;
}

#if defined(__SSE2__)
// From `i`, the bytes before which are known to be raw: 64 a step while they are all raw, then 16.
[[gnu::always_inline]] inline std::size_t raw_run_sse2(char const* p, std::size_t n, std::size_t i) noexcept {
    for (; i + 64 <= n; i += 64) {
        auto const* q = reinterpret_cast<__m128i const*>(p + i);
        auto const both = _mm_and_si128(_mm_and_si128(raw_mask(_mm_loadu_si128(q)), raw_mask(_mm_loadu_si128(q + 1))),
                                        _mm_and_si128(raw_mask(_mm_loadu_si128(q + 2)), raw_mask(_mm_loadu_si128(q + 3))));
        if (_mm_movemask_epi8(both) != 0xffff) break;
    }
    for (; i + 16 <= n; i += 16)
        if (auto const k = raw_prefix16(p + i); k < 16) return i + k;
    // The last bytes: the 16 that end the text, of which those before `i` are known to be raw.
    if (n >= 16) return i == n ? n : n - 16 + raw_prefix16(p + n - 16);
    while (i < n && is_raw(p[i]) != 0) ++i;
    return i;
}
#endif

form_scan fastest_scan() noexcept {
#if defined(INTEGRATION_FORM_AVX2)
    __builtin_cpu_init();  // this runs among the static constructors, perhaps before libgcc's
#endif
    for (auto how : {form_scan::avx2, form_scan::sse2})
        if (form_scan_supported(how)) return how;
    return form_scan::portable;
}

// Zero (portable) until initialised, so a form read by another static constructor is still read.
form_scan const best_scan = fastest_scan();

}  // namespace

bool form_scan_supported(form_scan how) noexcept {
    switch (how) {
    case form_scan::portable: return true;
#if defined(__SSE2__)
    case form_scan::sse2: return true;
#endif
#if defined(INTEGRATION_FORM_AVX2)
    case form_scan::avx2: return __builtin_cpu_supports("avx2") != 0;
#endif
    default: return false;
    }
}

std::size_t raw_run_scalar(std::string_view text) noexcept {
    std::size_t i = 0;
    while (i < text.size() && is_raw(text[i]) != 0) ++i;
    return i;
}

// A value is mostly one long run (a message body), so the bytes are checked 32 at a time where
// the CPU has AVX2, else 16 at a time (64 a step while they are all raw).
std::size_t raw_run(std::string_view text, form_scan how) noexcept {
    auto const* p = text.data();
    auto const n = text.size();
    switch (how) {
#if defined(INTEGRATION_FORM_AVX2)
    // The 16-byte steps finish (or find again) from where the 32-byte ones stopped.
    case form_scan::avx2: return raw_run_sse2(p, n, n >= 32 ? raw_run_avx2(p, n) : 0);
#endif
#if defined(__SSE2__)
    case form_scan::sse2: return raw_run_sse2(p, n, 0);
#endif
    default: return raw_run_portable(p, n);
    }
}

std::size_t raw_run(std::string_view text) noexcept { return raw_run(text, best_scan); }

namespace {

int nibble(char c) noexcept {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

// Percent-decodes `text` (`+` is a space) after its first `raw` bytes into `out`; returns the
// bytes written, or nullopt on a broken escape or a byte form encoding never leaves raw.
std::optional<std::size_t> decode_into(std::string_view text, std::size_t raw, char* out, form_scan how) {
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
        auto const run = raw_run(text.substr(i), how);
        std::memcpy(out + o, text.data() + i, run);
        o += run;
        i += run;
    }
    return o;
}

}  // namespace

std::optional<form_fields> form_params(std::string_view body) { return form_params(body, best_scan); }

std::optional<form_fields> form_params(std::string_view body, form_scan how) {
    form_fields out;
    out.pairs_.reserve(16);  // a webhook's form has a dozen or two fields: one allocation, mostly
    // One name or value: a view of the body when it has nothing to decode, else decoded into
    // the buffer (decoding never lengthens, so the body's size always suffices).
    auto part = [&](std::string_view text) -> std::optional<std::string_view> {
        auto const raw = raw_run(text, how);
        if (raw == text.size()) return text;
        if (!out.decoded_) out.decoded_ = std::make_unique_for_overwrite<char[]>(body.size());
        char* const at = out.decoded_.get() + out.used_;
        auto const n = decode_into(text, raw, at, how);
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
