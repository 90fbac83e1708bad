#include "access_log.hpp"

#include <integration/core/time.hpp>

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <cstdio>
#include <mutex>

namespace integration::host {
namespace {
std::mutex out_mutex;

void write_line(boost::json::object const& o) {
    auto line = boost::json::serialize(o) + "\n";
    std::lock_guard lock(out_mutex);
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
}
}  // namespace

void log_access(access_entry const& e) {
    auto path = e.target.substr(0, e.target.find('?'));
    boost::json::object o;
    o["time"] = format_time(std::chrono::system_clock::now());
    o["method"] = e.method;
    o["path"] = path;
    o["status"] = e.status;
    // Integers: Boost.JSON prints every double in exponent form, which log readers dislike.
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(e.latency).count();
    o["latencyMs"] = us / 1000;
    o["latencyUs"] = us;
    o["traceId"] = e.trace_id;
    o["tenant"] = e.tenant;
    write_line(o);
}

void log_event(std::string_view level, std::string_view message) {
    boost::json::object o;
    o["time"] = format_time(std::chrono::system_clock::now());
    o["level"] = level;
    o["message"] = message;
    write_line(o);
}

}  // namespace integration::host
