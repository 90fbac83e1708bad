#ifndef INTEGRATION_SRC_DETAIL_FORM_HPP
#define INTEGRATION_SRC_DETAIL_FORM_HPP

// `application/x-www-form-urlencoded` bodies (Slack, Twilio and GitHub form webhooks), decoded
// from the bytes as received: no null terminator is assumed, nothing is re-encoded.

#include <cstddef>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace integration::detail {

/** The decoded `name=value` pairs of a form body, in order. A name or value with nothing to
 *  decode is a view of the body (which must outlive this); the others are views of one buffer
 *  of decoded bytes, allocated once when the first escape is met. */
class form_fields {
public:
    using value_type = std::pair<std::string_view, std::string_view>;
    auto begin() const noexcept { return pairs_.begin(); }
    auto end() const noexcept { return pairs_.end(); }
    std::size_t size() const noexcept { return pairs_.size(); }

private:
    friend std::optional<form_fields> form_params(std::string_view body);
    std::vector<value_type> pairs_;
    std::unique_ptr<char[]> decoded_;  // never reallocated: the views into it stay valid when moved
    std::size_t used_ = 0;
};

/** The length of the run of bytes at the start of `text` that form encoding leaves raw (RFC
 *  3986 query characters but `&`, `+`, `%`): vectorised where the target has SSE2. */
std::size_t raw_run(std::string_view text) noexcept;
/** `raw_run`, one byte at a time: the definition the fast one is tested against. */
std::size_t raw_run_scalar(std::string_view text) noexcept;

/** The decoded pairs of `body`, or nullopt when it is not form encoding (a broken escape, or a
 *  byte form encoding never leaves raw). */
std::optional<form_fields> form_params(std::string_view body);

}  // namespace integration::detail

#endif
