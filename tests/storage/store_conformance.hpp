#ifndef INTEGRATION_TESTS_STORAGE_STORE_CONFORMANCE_HPP
#define INTEGRATION_TESTS_STORAGE_STORE_CONFORMANCE_HPP

// The storage conformance suite: every backend instantiates `store_conformance` with its
// `store_backend` and must pass every case unchanged.

#include "fixtures.hpp"

#include <integration/ports/clock.hpp>

namespace integration::testing {

class store_conformance : public ::testing::TestWithParam<store_backend> {
protected:
    void SetUp() override { store_ = GetParam().open(dir_, &clock_); }

    /** Runs a transaction that must succeed. */
    void write(request_context const& ctx, storage::store::work fn) { must(store_->transact(ctx, std::move(fn))); }
    /** Runs a read that must succeed. */
    void read(request_context const& ctx, storage::store::work fn) { must(store_->read(ctx, std::move(fn))); }

    temp_dir dir_;
    manual_clock clock_;
    std::unique_ptr<storage::store> store_;
    request_context a_ = request_context::for_tenant("tenant-a", "alice");
    request_context b_ = request_context::for_tenant("tenant-b", "bob");
};

}  // namespace integration::testing

#endif
