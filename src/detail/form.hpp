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

/** The ways `raw_run` can scan: the fastest the CPU supports is chosen once, at run time. */
enum class form_scan {
    portable,  ///< eight bytes a step, any CPU
    sse2,      ///< 16 bytes a step (64 while they are all raw); built where the target has SSE2
    avx2,      ///< 32 bytes a step, then the SSE2 steps; built for x86-64, run where the CPU has AVX2
};

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
    friend std::optional<form_fields> form_params(std::string_view body, form_scan how);
    std::vector<value_type> pairs_;
    std::unique_ptr<char[]> decoded_;  // never reallocated: the views into it stay valid when moved
    std::size_t used_ = 0;
};

/** Whether this build and this CPU can run `how`. */
bool form_scan_supported(form_scan how) noexcept;

/** The length of the run of bytes at the start of `text` that form encoding leaves raw (RFC
 *  3986 query characters but `&`, `+`, `%`), by the fastest scan the CPU supports. */
std::size_t raw_run(std::string_view text) noexcept;
/** `raw_run` by the scan `how`, which must be supported (so that tests run every variant). */
std::size_t raw_run(std::string_view text, form_scan how) noexcept;
/** `raw_run`, one byte at a time: the definition the fast ones are tested against. */
std::size_t raw_run_scalar(std::string_view text) noexcept;

/** The decoded pairs of `body`, or nullopt when it is not form encoding (a broken escape, or a
 *  byte form encoding never leaves raw). */
std::optional<form_fields> form_params(std::string_view body);
/** `form_params` scanning with `how`, which must be supported. */
std::optional<form_fields> form_params(std::string_view body, form_scan how);

}  // namespace integration::detail

#endif
