#ifndef INTEGRATION_CORE_SECRET_BYTES_HPP
#define INTEGRATION_CORE_SECRET_BYTES_HPP

/** @file
 *  A buffer for secret material that is wiped when released and never printed.
 */

#include <integration/export.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace integration {

/** Owns secret bytes; the memory is overwritten with zeros on destruction, move and `clear`.
 *  Copies are explicit (`clone`) so secrets are not duplicated by accident. */
class INTEGRATION_EXPORT secret_bytes {
public:
    secret_bytes() = default;
    /** Copies `text` in; the caller should wipe its own copy. */
    explicit secret_bytes(std::string_view text) : bytes_(text.begin(), text.end()) {}
    secret_bytes(unsigned char const* data, std::size_t n) : bytes_(data, data + n) {}
    ~secret_bytes() { clear(); }
    secret_bytes(secret_bytes&& o) noexcept : bytes_(std::move(o.bytes_)) { o.bytes_.clear(); }
    secret_bytes& operator=(secret_bytes&& o) noexcept {
        if (this != &o) {
            clear();
            bytes_ = std::move(o.bytes_);
            o.bytes_.clear();
        }
        return *this;
    }
    secret_bytes(secret_bytes const&) = delete;
    secret_bytes& operator=(secret_bytes const&) = delete;

    /** An explicit copy. */
    secret_bytes clone() const { return secret_bytes(bytes_.data(), bytes_.size()); }
    /** Makes room for `n` bytes (zeroed), for filling in place. */
    static secret_bytes zeroed(std::size_t n) {
        secret_bytes s;
        s.bytes_.assign(n, 0);
        return s;
    }

    unsigned char* data() noexcept { return bytes_.data(); }
    unsigned char const* data() const noexcept { return bytes_.data(); }
    std::size_t size() const noexcept { return bytes_.size(); }
    bool empty() const noexcept { return bytes_.empty(); }
    /** A view for building one request; do not keep it. */
    std::string_view view() const noexcept {
        return {reinterpret_cast<char const*>(bytes_.data()), bytes_.size()};
    }
    /** Shrinks to `n` bytes, wiping the tail. */
    void truncate(std::size_t n) noexcept;
    /** Wipes and empties. */
    void clear() noexcept;

    friend INTEGRATION_EXPORT bool operator==(secret_bytes const& a, secret_bytes const& b) noexcept;

private:
    std::vector<unsigned char> bytes_;
};

}  // namespace integration

#endif
