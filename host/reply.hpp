#ifndef INTEGRATION_HOST_REPLY_HPP
#define INTEGRATION_HOST_REPLY_HPP

// What a handler answers, before it becomes an HTTP message: handlers never see Beast.

#include <boost/json/value.hpp>

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace integration::host {

struct reply {
    unsigned status = 200;
    boost::json::value body;
    std::string content_type = "application/json";
    std::vector<std::pair<std::string, std::string>> headers;
    std::optional<std::string> text;  // sent as is instead of `body` (e.g. the Prometheus exposition)
    std::string tenant;  // an open route's resolved tenant, for the access log (never sent)
};

}  // namespace integration::host

#endif
