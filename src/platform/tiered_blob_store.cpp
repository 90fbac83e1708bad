#include "tiered_blob_store.hpp"

namespace integration::detail {
namespace {

class tiered_blob_store final : public blobs::blob_store {
public:
    tiered_blob_store(std::unique_ptr<blobs::blob_store> small, std::unique_ptr<blobs::blob_store> large, std::size_t limit)
        : small_(std::move(small)), large_(std::move(large)), limit_(limit) {}

    result<std::string> put(std::string const& tenant, std::string const& key, std::string_view data, durability d) override {
        bool const small = data.size() <= limit_;
        auto& to = small ? *small_ : *large_;
        auto& other = small ? *large_ : *small_;
        auto ref = to.put(tenant, key, data, d);
        if (!ref) return ref;
        // The new copy is never undone: `to` may have held the only earlier one, which the put
        // replaced. Reads take the small tier first, so a large copy left behind is never read,
        // while a small one left behind hides the new large copy: that put is refused, and reads
        // go on giving the old content.
        auto gone = other.remove(tenant, *ref);
        if (gone || small) return ref;
        auto left = other.get(tenant, *ref);
        if (!left && left.error() == errc::not_found) return ref;
        return error{gone.error().code(), "blob store: " + key + " was not replaced: its earlier content could not "
                                          "be removed (" + gone.error().detail() + ")"};
    }

    result<std::string> get(std::string const& tenant, std::string const& ref) override {
        auto found = small_->get(tenant, ref);
        if (found || found.error() != errc::not_found) return found;
        return large_->get(tenant, ref);
    }

    result<void> remove(std::string const& tenant, std::string const& ref) override {
        if (auto r = small_->remove(tenant, ref); !r) return r;
        return large_->remove(tenant, ref);
    }

    result<std::size_t> purge_older_than(time_point cutoff, std::string_view key_prefix) override {
        auto a = small_->purge_older_than(cutoff, key_prefix);
        if (!a) return a.error();
        auto b = large_->purge_older_than(cutoff, key_prefix);
        if (!b) return b.error();
        return *a + *b;
    }

private:
    std::unique_ptr<blobs::blob_store> small_;
    std::unique_ptr<blobs::blob_store> large_;
    std::size_t limit_;
};

}  // namespace

std::unique_ptr<blobs::blob_store> make_tiered_blob_store(std::unique_ptr<blobs::blob_store> small,
                                                          std::unique_ptr<blobs::blob_store> large,
                                                          std::size_t small_limit) {
    return std::make_unique<tiered_blob_store>(std::move(small), std::move(large), small_limit);
}

}  // namespace integration::detail
