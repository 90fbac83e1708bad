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
    /** Whether publishing the event whose columns `head` holds (ids, type, tenant, aggregate,
     *  version, time; no data, trace or source) needs its whole envelope. When it does not, the
     *  relay publishes `head` as it is and never parses the stored envelope. */
    virtual bool wants(event_envelope const& head) {
        (void)head;
        return true;
    }
};

/** Delivers envelopes to handlers in this process, synchronously, by event type or to all. */
class INTEGRATION_EXPORT in_process_dispatcher final : public event_publisher {
public:
    using handler = std::function<result<void>(event_envelope const&)>;
    /** Whether a handler needs the whole envelope of the event `head` describes (`event_publisher::wants`). */
    using filter = std::function<bool(event_envelope const& head)>;

    /** Calls `h` for events of `event_type`, or for every event when it is "*". With `wants`,
     *  `h` gets only the event's columns when `wants` says so (e.g. it counts event types). */
    void subscribe(std::string event_type, handler h, filter wants = {});
    /** Runs every matching handler; the first failure fails the publish. */
    result<void> publish(event_envelope const& e) override;
    /** True when a matching handler has no filter or its filter wants `head` whole. */
    bool wants(event_envelope const& head) override;

private:
    struct listener {
        std::string event_type;
        handler h;
        filter wants;
    };
    std::mutex mutex_;
    std::vector<listener> handlers_;
};

}  // namespace integration::events

#endif
