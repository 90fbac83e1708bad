#ifndef INTEGRATION_SRC_DETAIL_FORM_HPP
#define INTEGRATION_SRC_DETAIL_FORM_HPP

// `application/x-www-form-urlencoded` bodies (Slack, Twilio and GitHub form webhooks), decoded
// from the bytes as received: no null terminator is assumed, nothing is re-encoded.

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace integration::detail {

using form_fields = std::vector<std::pair<std::string, std::string>>;

/** One percent-decoded name or value (`+` is a space); nullopt on a broken escape or a byte form
 *  encoding never leaves raw. */
std::optional<std::string> form_decode(std::string_view text);
/** The decoded `name=value` pairs in order, or nullopt when the body is not form encoding. */
std::optional<form_fields> form_params(std::string_view body);

}  // namespace integration::detail

#endif
