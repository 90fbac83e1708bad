#include <integration/ports/clock.hpp>

namespace integration {
system_clock& system_clock::instance() noexcept {
    static system_clock c;
    return c;
}
}  // namespace integration
