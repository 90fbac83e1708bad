#ifndef INTEGRATION_DETAIL_URL_DESTINATION_HPP
#define INTEGRATION_DETAIL_URL_DESTINATION_HPP

#include <integration/outbound/egress_policy.hpp>

#include <string_view>

namespace integration::detail {

/** Where an http(s) URL leads as the egress policy reads it (scheme, lower-case host or literal
 *  address, port), with no policy applied: a host that begins with a dotted quad
 *  (127.0.0.1.nip.io) is read whole, where Boost.URL 1.81 ends it at the quad. Errors: a scheme
 *  other than http(s) or user information (`egress_denied`), a malformed host or port. */
result<net::destination> read_destination(std::string_view url);

}  // namespace integration::detail

#endif
