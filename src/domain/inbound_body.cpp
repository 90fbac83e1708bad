#include <integration/domain/inbound_body.hpp>
#include <integration/core/utf8.hpp>

#include "../detail/form.hpp"

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <cctype>

namespace integration::webhooks {

body_format body_format_of(std::string_view content_type) noexcept {
    constexpr std::string_view form = "application/x-www-form-urlencoded";
    if (content_type.size() < form.size()) return body_format::json;
    if (!std::equal(form.begin(), form.end(), content_type.begin(), [](char a, char b) {
            return a == std::tolower(static_cast<unsigned char>(b));
        }))
        return body_format::json;
    bool const exact = content_type.size() == form.size() || content_type[form.size()] == ';' ||
                       content_type[form.size()] == ' ';
    return exact ? body_format::form : body_format::json;
}

std::optional<boost::json::value> parse_body(std::string_view raw, body_format format) {
    if (format == body_format::form) {
        auto params = integration::detail::form_params(raw);
        if (!params) return std::nullopt;
        boost::json::object fields;
        for (auto& [key, value] : *params) {
            if (!integration::is_valid_utf8(key) || !integration::is_valid_utf8(value)) return std::nullopt;
            auto* seen = fields.if_contains(key);
            if (!seen) {
                fields[key] = value;
                continue;
            }
            if (!seen->is_array()) *seen = boost::json::array{*seen};
            seen->get_array().emplace_back(value);
        }
        return boost::json::value(std::move(fields));
    }
    boost::json::parse_options opts;
    opts.max_depth = max_body_depth;
    boost::system::error_code ec;
    auto v = boost::json::parse(raw, ec, {}, opts);
    if (ec) return std::nullopt;
    return v;
}

}  // namespace integration::webhooks
