#ifndef INTEGRATION_TESTS_SUPPORT_GZIP_HPP
#define INTEGRATION_TESTS_SUPPORT_GZIP_HPP

// gzip (RFC 1952) through zlib, for peers that compress their answers.

#include <zlib.h>

#include <stdexcept>
#include <string>
#include <string_view>

namespace integration::testing {

inline std::string gzip(std::string_view plain) {
    z_stream z{};
    if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)  // +16: gzip framing
        throw std::runtime_error("deflateInit2");
    std::string out(deflateBound(&z, plain.size()), '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(plain.data()));
    z.avail_in = static_cast<uInt>(plain.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    auto rc = deflate(&z, Z_FINISH);
    out.resize(z.total_out);
    deflateEnd(&z);
    if (rc != Z_STREAM_END) throw std::runtime_error("deflate");
    return out;
}

}  // namespace integration::testing

#endif
