#ifndef INTEGRATION_SERVICES_OUTBOX_RELAY_HPP
#define INTEGRATION_SERVICES_OUTBOX_RELAY_HPP

/** @file
 *  The outbox relay: moves committed events from the store's outbox to an event publisher, at
 *  least once, in commit order (so in order per aggregate), and marks them published.
 */

#include <integration/ports/clock.hpp>
#include <integration/ports/event_publisher.hpp>
#include <integration/ports/store.hpp>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace integration::events {

/** Options of `outbox_relay`. */
struct outbox_relay_options {
    std::size_t batch = 256;                               ///< Events fetched per pass.
    std::chrono::milliseconds poll_interval{100};          ///< Idle wait between passes.
    integration::clock const* clock = nullptr;             ///< For `publishedAt`; system clock when null.
};

/** Relays outbox rows to a publisher. `run_once` for manual control; `start` for a thread. */
class outbox_relay {
public:
    outbox_relay(storage::store& store, event_publisher& publisher, outbox_relay_options options = {});
    ~outbox_relay();
    outbox_relay(outbox_relay const&) = delete;
    outbox_relay& operator=(outbox_relay const&) = delete;

    /** Publishes one batch in order, stopping at the first failure so nothing overtakes it.
     *  Returns how many events were published and marked. */
    result<std::size_t> run_once();
    /** Starts the background thread. */
    void start();
    /** Stops it after the current pass. */
    void stop();
    /** Wakes the thread now, e.g. right after a commit. */
    void notify();

private:
    void loop();

    storage::store& store_;
    event_publisher& publisher_;
    outbox_relay_options options_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    bool notified_ = false;
    std::thread thread_;
};

}  // namespace integration::events

#endif
