#include <integration/services/outbox_relay.hpp>

#include "../detail/thread_name.hpp"

namespace integration::events {

outbox_relay::outbox_relay(storage::store& store, event_publisher& publisher, outbox_relay_options options)
    : store_(store), publisher_(publisher), options_(options) {
    if (!options_.clock) options_.clock = &system_clock::instance();
}

outbox_relay::~outbox_relay() { stop(); }

result<std::size_t> outbox_relay::run_once() {
    auto pending = store_.pending_events(options_.batch);
    if (!pending) return pending.error();
    std::vector<std::int64_t> done;
    done.reserve(pending->size());
    result<void> failure;
    for (auto const& rec : *pending) {
        failure = publisher_.publish(rec.envelope);
        if (!failure) break;
        done.push_back(rec.sequence);
    }
    if (!done.empty())
        if (auto r = store_.mark_published(done, options_.clock->now()); !r) return r.error();
    if (!failure) return failure.error();
    return done.size();
}

void outbox_relay::start() {
    std::lock_guard lock(mutex_);
    if (thread_.joinable()) return;
    stopping_ = false;
    thread_ = std::thread([this] {
        detail::name_this_thread("integ-outbox");
        loop();
    });
}

void outbox_relay::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void outbox_relay::notify() {
    {
        std::lock_guard lock(mutex_);
        notified_ = true;
    }
    wake_.notify_all();
}

void outbox_relay::loop() {
    while (true) {
        auto n = run_once();
        std::unique_lock lock(mutex_);
        if (stopping_) return;
        // A full batch means more may be waiting: go again at once.
        if (n && *n == options_.batch) continue;
        wake_.wait_for(lock, options_.poll_interval, [&] { return stopping_ || notified_; });
        notified_ = false;
        if (stopping_) return;
    }
}

}  // namespace integration::events
