#ifndef INTEGRATION_HOST_PROBLEM_HPP
#define INTEGRATION_HOST_PROBLEM_HPP

// RFC 9457 problem details. Every `type` is https://integration.dev/problems/<slug>; the slugs
// and the errc → status table live in problem.cpp and nowhere else.

#include "reply.hpp"

#include <integration/core/error.hpp>

#include <string>
#include <string_view>

namespace integration::host {

inline constexpr std::string_view problem_base = "https://integration.dev/problems/";

/** A problem+json reply. */
reply problem(unsigned status, std::string_view slug, std::string_view title, std::string detail);

/** The problem for a library error; unexpected errors become 500 without their detail. */
reply problem_from(error const& e);

}  // namespace integration::host

#endif
