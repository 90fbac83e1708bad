#pragma once

#include <chrono>

namespace integration::detail {

// What a "...without blocking" check asks of a cached entry: still valid this long from now, so
// the call that follows it is not the one that finds the entry expired and reads the store.
inline constexpr std::chrono::milliseconds cache_margin{100};

}  // namespace integration::detail
