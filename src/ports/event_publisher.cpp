#include <integration/ports/event_publisher.hpp>

namespace integration::events {

void in_process_dispatcher::subscribe(std::string event_type, handler h) {
    std::lock_guard lock(mutex_);
    handlers_.emplace_back(std::move(event_type), std::move(h));
}

result<void> in_process_dispatcher::publish(event_envelope const& e) {
    std::vector<handler> matching;
    {
        std::lock_guard lock(mutex_);
        for (auto const& [type, h] : handlers_)
            if (type == "*" || type == e.event_type) matching.push_back(h);
    }
    for (auto const& h : matching)
        if (auto r = h(e); !r) return r;
    return {};
}

}  // namespace integration::events
