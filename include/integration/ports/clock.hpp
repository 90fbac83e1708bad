#ifndef INTEGRATION_PORTS_CLOCK_HPP
#define INTEGRATION_PORTS_CLOCK_HPP

/** @file
 *  The clock port. Every timestamp the library records comes from a `clock`, so tests can drive
 *  time with `manual_clock`.
 */

#include <integration/core/time.hpp>
#include <integration/export.hpp>

#include <atomic>
#include <chrono>

namespace integration {

/** The clock port. Implementations must be safe to call from several threads. */
class INTEGRATION_EXPORT clock {
public:
    virtual ~clock() = default;
    /** The current instant. */
    virtual time_point now() const = 0;
};

/** The operating system's wall clock. */
class INTEGRATION_EXPORT system_clock final : public clock {
public:
    time_point now() const override { return std::chrono::system_clock::now(); }
    /** A shared instance for defaults. */
    static system_clock& instance() noexcept;
};

/** A clock that moves only when told to; for tests. */
class INTEGRATION_EXPORT manual_clock final : public clock {
public:
    explicit manual_clock(time_point start = time_point{std::chrono::milliseconds{1'767'225'600'000}})
        : now_(start.time_since_epoch().count()) {}

    time_point now() const override { return time_point{time_point::duration{now_.load()}}; }
    /** Moves the clock forward (or backward, to test clock jumps). */
    void advance(time_point::duration d) noexcept { now_ += d.count(); }
    /** Sets the clock to an instant. */
    void set(time_point t) noexcept { now_ = t.time_since_epoch().count(); }

private:
    std::atomic<time_point::rep> now_;
};

}  // namespace integration

#endif
