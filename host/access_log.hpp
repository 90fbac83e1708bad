#ifndef INTEGRATION_HOST_ACCESS_LOG_HPP
#define INTEGRATION_HOST_ACCESS_LOG_HPP

// One JSON line per request on stderr, written in batches within 50 ms (host events at once). Never
// the Authorization header, never a body, never a query string (its values may hold secrets).

#include <chrono>
#include <string_view>

namespace integration::host {

struct access_entry {
    std::string_view method;
    std::string_view target;  // the query string is cut off here
    unsigned status = 0;
    std::chrono::steady_clock::duration latency{};
    std::string_view trace_id;
    std::string_view tenant;
};

void log_access(access_entry const& e);

/** A free-form host event (startup, shutdown, failures), also as one JSON line. */
void log_event(std::string_view level, std::string_view message);

}  // namespace integration::host

#endif
