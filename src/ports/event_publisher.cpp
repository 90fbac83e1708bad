#include <integration/ports/event_publisher.hpp>

#include <algorithm>

namespace integration::events {

void in_process_dispatcher::subscribe(std::string event_type, handler h, filter wants) {
    std::lock_guard lock(mutex_);
    handlers_.push_back({std::move(event_type), std::move(h), std::move(wants)});
}

result<void> in_process_dispatcher::publish(event_envelope const& e) {
    std::vector<handler> matching;
    {
        std::lock_guard lock(mutex_);
        for (auto const& l : handlers_)
            if (l.event_type == "*" || l.event_type == e.event_type) matching.push_back(l.h);
    }
    for (auto const& h : matching)
        if (auto r = h(e); !r) return r;
    return {};
}

bool in_process_dispatcher::wants(event_envelope const& head) {
    std::vector<filter> matching;
    {
        std::lock_guard lock(mutex_);
        for (auto const& l : handlers_) {
            if (l.event_type != "*" && l.event_type != head.event_type) continue;
            if (!l.wants) return true;
            matching.push_back(l.wants);
        }
    }
    // Called outside the lock: a filter may read the store.
    return std::any_of(matching.begin(), matching.end(), [&](filter const& f) { return f(head); });
}

}  // namespace integration::events
