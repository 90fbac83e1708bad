#ifndef INTEGRATION_PORTS_EVENT_PUBLISHER_HPP
#define INTEGRATION_PORTS_EVENT_PUBLISHER_HPP

/** @file
 *  The event-publisher port and the default in-process dispatcher.
 */

#include <integration/domain/event.hpp>
#include <integration/export.hpp>

#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace integration::events {

/** The event-publisher port: hands an envelope to a bus. Called by the outbox relay, at least
 *  once per event, in order per aggregate. A failure leaves the event in the outbox for a retry. */
class INTEGRATION_EXPORT event_publisher {
public:
    virtual ~event_publisher() = default;
    virtual result<void> publish(event_envelope const& e) = 0;
};

/** Delivers envelopes to handlers in this process, synchronously, by event type or to all. */
class INTEGRATION_EXPORT in_process_dispatcher final : public event_publisher {
public:
    using handler = std::function<result<void>(event_envelope const&)>;

    /** Calls `h` for events of `event_type`, or for every event when it is "*". */
    void subscribe(std::string event_type, handler h);
    /** Runs every matching handler; the first failure fails the publish. */
    result<void> publish(event_envelope const& e) override;

private:
    std::mutex mutex_;
    std::vector<std::pair<std::string, handler>> handlers_;
};

}  // namespace integration::events

#endif
