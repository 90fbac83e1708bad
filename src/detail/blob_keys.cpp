#include "blob_keys.hpp"

#include <integration/ports/blob_store.hpp>

#include <integration/core/context.hpp>

#include <algorithm>

namespace integration::blobs::detail {

result<void> validate_key(std::string_view key) {
    bool ok = !key.empty() && key.size() <= 512 && key.front() != '/' && key.back() != '/';
    for (std::size_t start = 0; ok && start <= key.size();) {
        auto slash = key.find('/', start);
        auto seg = key.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
        ok = !seg.empty() && seg != "." && seg != ".." &&
             seg.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == std::string_view::npos;
        if (slash == std::string_view::npos) break;
        start = slash + 1;
    }
    if (!ok)
        return error{errc::invalid_argument,
                     "a blob key is 1-512 characters of segments of A-Z, a-z, 0-9, '.', '_' or '-' separated by '/', "
                     "without '.' or '..' segments"};
    return {};
}

result<void> validate_put(std::string const& tenant, std::string_view key) {
    if (auto r = validate_tenant_id(tenant); !r) return r;
    if (auto r = validate_key(key); !r) return r;
    // A segment is a file or folder name: at most 200 characters leave room, under the usual
    // 255, for the suffix of a temporary file. Written keys only: a blob stored before the
    // limit is still read and removed.
    for (std::size_t start = 0; start < key.size();) {
        auto slash = std::min(key.find('/', start), key.size());
        if (slash - start > 200)
            return error{errc::invalid_argument, "a blob key's segments are at most 200 characters each"};
        start = slash + 1;
    }
    return {};
}

result<std::string> key_of(std::string const& tenant, std::string const& ref) {
    if (auto r = validate_tenant_id(tenant); !r) return r.error();
    std::string prefix = "blob://" + tenant + "/";
    if (!ref.starts_with(prefix)) return error{errc::not_found, "blob " + ref + " does not exist in this tenant"};
    auto key = ref.substr(prefix.size());
    if (auto r = validate_key(key); !r) return r.error();
    return key;
}

}  // namespace integration::blobs::detail

namespace integration::blobs {

std::string reference(std::string const& tenant, std::string const& key) { return "blob://" + tenant + "/" + key; }

result<std::vector<std::string>> blob_store::put_many(std::vector<blob_write> const& blobs, durability d) {
    std::vector<std::string> refs;
    refs.reserve(blobs.size());
    for (auto const& b : blobs) {
        auto ref = put(b.tenant, b.key, b.data, d);
        if (!ref) return ref.error();
        refs.push_back(std::move(*ref));
    }
    return refs;
}

}  // namespace integration::blobs
