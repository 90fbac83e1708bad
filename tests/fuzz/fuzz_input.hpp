#ifndef INTEGRATION_TESTS_FUZZ_FUZZ_INPUT_HPP
#define INTEGRATION_TESTS_FUZZ_FUZZ_INPUT_HPP

// The fuzzers' input format: `n` fields, each ended by a newline, then the body (the rest, newlines
// and all). Missing fields are empty; the seeds in tests/fuzz/seeds follow it.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace integration::fuzz {

template <std::size_t N>
struct fields {
    std::array<std::string_view, N> line{};
    std::string_view body;
};

template <std::size_t N>
fields<N> split(std::uint8_t const* data, std::size_t size) {
    std::string_view rest(reinterpret_cast<char const*>(data), size);
    fields<N> out;
    for (auto& field : out.line) {
        auto const nl = rest.find('\n');
        field = rest.substr(0, nl);
        rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    }
    out.body = rest;
    return out;
}

}  // namespace integration::fuzz

#endif
