#ifndef INTEGRATION_BENCH_STORE_MMAP_HPP
#define INTEGRATION_BENCH_STORE_MMAP_HPP

// The SQLite store's memory map for a bench run, so one binary measures both settings:
// BENCH_SQLITE_MMAP=<bytes> sets `sqlite_options::mmap_bytes`; unset keeps the library's default.

#include <integration/backends/sqlite/sqlite_store.hpp>

#include <cstdlib>
#include <string>

namespace integration::bench {

inline std::size_t store_mmap_bytes() {
    static std::size_t const bytes = [] {
        char const* v = std::getenv("BENCH_SQLITE_MMAP");
        return v && *v ? static_cast<std::size_t>(std::stoull(v)) : integration::storage::sqlite_options{}.mmap_bytes;
    }();
    return bytes;
}

}  // namespace integration::bench

#endif
