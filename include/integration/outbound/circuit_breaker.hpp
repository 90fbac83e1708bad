#ifndef INTEGRATION_OUTBOUND_CIRCUIT_BREAKER_HPP
#define INTEGRATION_OUTBOUND_CIRCUIT_BREAKER_HPP

/** @file
 *  A circuit breaker per connection: opens on a failure ratio over a sampling window (with a
 *  minimum throughput, as Polly does) or on N consecutive failures, lets one probe through when
 *  the break ends (half-open), and closes again when the probe succeeds.
 */

#include <integration/ports/clock.hpp>
#include <integration/core/enum.hpp>
#include <integration/export.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>

namespace integration::resilience {

enum class breaker_state { closed, open, half_open };

}  // namespace integration::resilience

template <>
struct integration::enum_names<integration::resilience::breaker_state> {
    static constexpr std::array<std::string_view, 3> values{"Closed", "Open", "HalfOpen"};
};

namespace integration::resilience {

/** Breaker options. Set `consecutive_failures` > 0 for consecutive-failure mode. */
struct breaker_options {
    double failure_ratio = 0.5;                       ///< Open when failures / calls reaches this...
    int minimum_throughput = 10;                      ///< ...over at least this many calls...
    std::chrono::milliseconds sampling_window{30'000};  ///< ...within this window.
    int consecutive_failures = 0;                     ///< If > 0: open after this many failures in a row instead.
    std::chrono::milliseconds break_duration{5'000};  ///< How long the breaker stays open.
};

/** One breaker; thread-safe. */
class INTEGRATION_EXPORT circuit_breaker {
public:
    circuit_breaker(integration::clock const& clock, breaker_options options) : clock_(clock), o_(options) {}

    /** What `allow` gives a call it lets through, for `record`. */
    using permit = std::uint64_t;

    /** May a call go through now? Its permit, or nothing while open. In half-open state exactly
     *  one caller gets one (the probe). */
    std::optional<permit> allow();
    /** Reports the outcome of the call `allow` let through with `p`. The outcome of a call let
     *  through before the breaker last changed state counts for nothing: a late answer from before
     *  a break, or from before the probe, neither closes the breaker nor opens it again. */
    void record(permit p, bool success);
    breaker_state state();
    /** When an open breaker lets the next probe through. */
    time_point open_until();

private:
    void trip(time_point now);

    integration::clock const& clock_;
    breaker_options o_;
    std::mutex mutex_;
    breaker_state state_ = breaker_state::closed;
    time_point open_until_{};
    bool probe_in_flight_ = false;
    permit generation_ = 0;  // of the current state: every change of state makes a new one
    int consecutive_ = 0;
    std::deque<std::pair<time_point, bool>> samples_;
    std::size_t failures_ = 0;  // failed samples in samples_
};

}  // namespace integration::resilience

#endif
