#ifndef INTEGRATION_HOST_ROUTER_HPP
#define INTEGRATION_HOST_ROUTER_HPP

// Routes `METHOD /path/{param}` to handlers; tells an unknown path (404) from a known path with
// another method (405).

#include "reply.hpp"

#include <integration/core/context.hpp>
#include <integration/storage/store.hpp>

#include <boost/json/object.hpp>

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace integration::host {

/** One request as a handler sees it. */
struct call {
    request_context ctx;
    std::map<std::string, std::string, std::less<>> params;  // from the path
    std::map<std::string, std::string, std::less<>> query;
    std::string body;
    std::function<std::string_view(std::string_view)> header;

    /** The body as a JSON object; malformed JSON names the byte offset. */
    result<boost::json::object> json() const;
    /** A query parameter, if present. */
    std::optional<std::string> query_param(std::string_view name) const;
    /** `limit` (1-500, default 50) and `cursor`. */
    result<storage::page_request> page() const;
};

using handler = std::function<result<reply>(call&)>;

class router {
public:
    /** `pattern` segments in braces bind path parameters; `open` routes need no API key. */
    void add(std::string method, std::string pattern, handler h, bool open = false);

    struct match {
        handler const* h = nullptr;
        bool open = false;
        std::string_view pattern;  // of the route matched, or of the path when only the method differs
        bool path_known = false;  // some route has this path with another method
        std::vector<std::string> allowed;
        std::map<std::string, std::string, std::less<>> params;
    };
    match find(std::string_view method, std::string_view path) const;

    /** A registered route, for the `routes` command and the OpenAPI consistency test. */
    struct route_info {
        std::string_view method;
        std::string_view pattern;
        bool open;
    };
    std::vector<route_info> routes() const;

private:
    struct route {
        std::string method;
        std::string pattern;
        std::vector<std::string> segments;
        handler h;
        bool open;
    };
    std::vector<route> routes_;
};

/** Splits a decoded path on `/`, dropping the leading empty segment. */
std::vector<std::string_view> split_path(std::string_view path);

}  // namespace integration::host

#endif
