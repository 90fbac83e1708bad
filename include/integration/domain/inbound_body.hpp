#ifndef INTEGRATION_DOMAIN_INBOUND_BODY_HPP
#define INTEGRATION_DOMAIN_INBOUND_BODY_HPP

/** @file
 *  An inbound webhook's raw payload as its canonical event carries it (`data.body`).
 */

#include <integration/core/enum.hpp>
#include <integration/export.hpp>

#include <boost/json/value.hpp>

#include <cstddef>
#include <optional>
#include <string_view>

namespace integration::webhooks {

/** How a payload's bytes are read into the canonical event's `body`. */
enum class body_format { json, form };

}  // namespace integration::webhooks

template <>
struct integration::enum_names<integration::webhooks::body_format> {
    static constexpr std::array<std::string_view, 2> values{"json", "form"};
};

namespace integration::webhooks {

/** A JSON body nested deeper than this is malformed (nothing a sender writes may exhaust the parser). */
inline constexpr std::size_t max_body_depth = 64;

/** The format of a body sent as `content_type`: form fields for
 *  `application/x-www-form-urlencoded` (any case, parameters allowed), JSON otherwise. */
INTEGRATION_EXPORT body_format body_format_of(std::string_view content_type) noexcept;

/** `raw` as the canonical event's `body`: the JSON value (at most `max_body_depth` deep), or the
 *  form fields as an object whose repeated names become arrays. Nothing when `raw` is not valid
 *  in `format` (a form field that is not UTF-8 included). The same bytes always give the same value. */
INTEGRATION_EXPORT std::optional<boost::json::value> parse_body(std::string_view raw, body_format format);

}  // namespace integration::webhooks

#endif
