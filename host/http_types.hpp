#ifndef INTEGRATION_HOST_HTTP_TYPES_HPP
#define INTEGRATION_HOST_HTTP_TYPES_HPP

// The Beast message types of the host (Beast stays inside host/).

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

namespace integration::host {

namespace beast_http = boost::beast::http;
using http_request = beast_http::request<beast_http::string_body>;
using http_response = beast_http::response<beast_http::string_body>;

}  // namespace integration::host

#endif
