#ifndef INTEGRATION_TESTS_SUPPORT_HOOKED_BLOBS_HPP
#define INTEGRATION_TESTS_SUPPORT_HOOKED_BLOBS_HPP

// A blob store that lets a test act between a blob's write and what its writer does next (the
// commit, the delete that follows an archive): where another process's work would interleave.

#include <integration/ports/blob_store.hpp>

#include <functional>
#include <optional>
#include <string>
#include <utility>

namespace integration::testing {

/** Wraps a real blob store; `after_put` (`before_remove`) runs once, right after the next blob
 *  whose key starts with `prefix` is written (right before the next blob is removed). */
class hooked_blobs final : public blobs::blob_store {
public:
    explicit hooked_blobs(blobs::blob_store& inner, std::string prefix = {}) : inner_(inner), prefix_(std::move(prefix)) {}
    std::function<void()> after_put;
    std::function<void()> before_remove;
    std::optional<error> get_error;  ///< What every get answers while set.
    std::optional<std::string> refused_tenant;  ///< Whose puts fail (a full disk) while set.
    result<std::string> put(std::string const& tenant, std::string const& key, std::string_view data, durability d) override {
        if (tenant == refused_tenant) return error{errc::storage_failure, "disk full"};
        auto out = inner_.put(tenant, key, data, d);
        if (key.starts_with(prefix_))
            if (auto hook = std::exchange(after_put, nullptr)) hook();
        return out;
    }
    result<std::string> get(std::string const& tenant, std::string const& ref) override {
        if (get_error) return *get_error;
        return inner_.get(tenant, ref);
    }
    result<void> remove(std::string const& tenant, std::string const& ref) override {
        if (auto hook = std::exchange(before_remove, nullptr)) hook();
        return inner_.remove(tenant, ref);
    }
    result<std::size_t> purge_older_than(time_point cutoff, std::string_view prefix) override {
        return inner_.purge_older_than(cutoff, prefix);
    }

private:
    blobs::blob_store& inner_;
    std::string prefix_;
};

}  // namespace integration::testing

#endif
