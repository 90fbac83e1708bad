// Token-bucket acquire (one key, uncontended, system clock) against its floor: reading the clock
// plus an uncontended mutex lock/unlock, in the same process.

#include <integration/outbound/token_bucket.hpp>

#include <benchmark/benchmark.h>

#include <mutex>

using namespace integration;

namespace {

void token_bucket_acquire(benchmark::State& state) {
    resilience::rate_limiter limiter(system_clock::instance());
    rate_limit_profile huge{.requests_per_second = 1e12, .burst = 1'000'000'000};
    for (auto _ : state) benchmark::DoNotOptimize(limiter.try_acquire("tenant-a/prov-1/conn-1", huge));
}
BENCHMARK(token_bucket_acquire);

void clock_and_mutex_floor(benchmark::State& state) {
    std::mutex m;
    integration::clock const& c = system_clock::instance();
    for (auto _ : state) {
        benchmark::DoNotOptimize(c.now());
        std::lock_guard lock(m);
    }
}
BENCHMARK(clock_and_mutex_floor);

}  // namespace

BENCHMARK_MAIN();
