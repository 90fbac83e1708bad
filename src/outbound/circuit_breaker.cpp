#include <integration/outbound/circuit_breaker.hpp>

namespace integration::resilience {

std::optional<circuit_breaker::permit> circuit_breaker::allow() {
    std::lock_guard lock(mutex_);
    auto now = clock_.now();
    // Further off than a whole break: the clock stepped back since the breaker opened, and the
    // break counts from now instead of lasting as long as the step.
    if (state_ == breaker_state::open && open_until_ - now > o_.break_duration) open_until_ = now + o_.break_duration;
    if (state_ == breaker_state::open && now >= open_until_) {
        state_ = breaker_state::half_open;
        ++generation_;
        probe_in_flight_ = false;
    }
    switch (state_) {
    case breaker_state::closed: return generation_;
    case breaker_state::open: return std::nullopt;
    case breaker_state::half_open:
        if (probe_in_flight_) return std::nullopt;
        probe_in_flight_ = true;
        return generation_;
    }
    return std::nullopt;
}

void circuit_breaker::trip(time_point now) {
    state_ = breaker_state::open;
    ++generation_;
    open_until_ = now + o_.break_duration;
    probe_in_flight_ = false;
    samples_.clear();
    failures_ = 0;
    consecutive_ = 0;
}

void circuit_breaker::record(permit p, bool success) {
    std::lock_guard lock(mutex_);
    if (p != generation_) return;  // let through in an earlier state
    auto now = clock_.now();
    if (state_ == breaker_state::half_open) {
        if (success) {
            state_ = breaker_state::closed;
            ++generation_;
            samples_.clear();
            failures_ = 0;
            consecutive_ = 0;
        } else {
            trip(now);
        }
        probe_in_flight_ = false;
        return;
    }
    if (o_.consecutive_failures > 0) {
        consecutive_ = success ? 0 : consecutive_ + 1;
        if (consecutive_ >= o_.consecutive_failures) trip(now);
        return;
    }
    samples_.emplace_back(now, success);
    failures_ += success ? 0 : 1;
    while (!samples_.empty() && (samples_.front().first + o_.sampling_window <= now || samples_.front().first > now)) {
        failures_ -= samples_.front().second ? 0 : 1;
        samples_.pop_front();
    }
    if (static_cast<int>(samples_.size()) < o_.minimum_throughput) return;
    if (static_cast<double>(failures_) / static_cast<double>(samples_.size()) >= o_.failure_ratio) trip(now);
}

breaker_state circuit_breaker::state() {
    std::lock_guard lock(mutex_);
    if (state_ == breaker_state::open && clock_.now() >= open_until_) return breaker_state::half_open;
    return state_;
}

time_point circuit_breaker::open_until() {
    std::lock_guard lock(mutex_);
    return open_until_;
}

}  // namespace integration::resilience
