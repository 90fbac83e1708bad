#include <integration/blobs/blob_store.hpp>

#include <integration/core/context.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace integration::blobs {
namespace {

namespace fs = std::filesystem;

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

class filesystem_store final : public blob_store {
public:
    explicit filesystem_store(fs::path root) : root_(std::move(root)) {}

    result<std::string> put(std::string const& tenant, std::string const& key, std::string_view data) override {
        if (auto r = validate_tenant_id(tenant); !r) return r.error();
        if (auto r = validate_key(key); !r) return r.error();
        auto path = root_ / tenant / key;
        std::error_code ec;
        fs::create_directories(path.parent_path(), ec);
        if (ec) return error{errc::unavailable, "blob store: cannot create " + path.parent_path().string() + ": " + ec.message()};
        auto tmp = path;
        tmp += ".tmp";
        int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) return error{errc::unavailable, "blob store: cannot write " + tmp.string() + ": " + std::strerror(errno)};
        std::size_t written = 0;
        while (written < data.size()) {
            auto n = ::write(fd, data.data() + written, data.size() - written);
            if (n <= 0) break;
            written += static_cast<std::size_t>(n);
        }
        bool ok = written == data.size() && ::fsync(fd) == 0;
        ::close(fd);
        if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
            ::unlink(tmp.c_str());
            return error{errc::unavailable, "blob store: writing " + path.string() + " failed: " + std::strerror(errno)};
        }
        return "blob://" + tenant + "/" + key;
    }

    result<std::string> get(std::string const& tenant, std::string const& ref) override {
        auto path = locate(tenant, ref);
        if (!path) return path.error();
        std::ifstream f(*path, std::ios::binary);
        if (!f) return error{errc::not_found, "blob " + ref + " does not exist"};
        return std::string(std::istreambuf_iterator<char>(f), {});
    }

    result<void> remove(std::string const& tenant, std::string const& ref) override {
        auto path = locate(tenant, ref);
        if (!path) return path.error();
        std::error_code ec;
        fs::remove(*path, ec);
        if (ec) return error{errc::unavailable, "blob store: cannot delete " + ref + ": " + ec.message()};
        return {};
    }

    result<std::size_t> purge_older_than(time_point cutoff) override {
        std::size_t n = 0;
        std::error_code ec;
        for (auto it = fs::recursive_directory_iterator(root_, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
            if (!it->is_regular_file()) continue;
            auto written = it->last_write_time();
            auto as_system = std::chrono::file_clock::to_sys(written);
            if (as_system < cutoff && fs::remove(it->path(), ec)) ++n;
        }
        if (ec) return error{errc::unavailable, "blob store: purge stopped: " + ec.message()};
        return n;
    }

private:
    result<fs::path> locate(std::string const& tenant, std::string const& ref) const {
        if (auto r = validate_tenant_id(tenant); !r) return r.error();
        std::string prefix = "blob://" + tenant + "/";
        if (!ref.starts_with(prefix)) return error{errc::not_found, "blob " + ref + " does not exist in this tenant"};
        auto key = ref.substr(prefix.size());
        if (auto r = validate_key(key); !r) return r.error();
        return root_ / tenant / key;
    }

    fs::path root_;
};

}  // namespace

result<std::unique_ptr<blob_store>> open_filesystem_blob_store(std::string root) {
    std::error_code ec;
    fs::create_directories(root, ec);
    if (ec) return error{errc::unavailable, "blob store: cannot create " + root + ": " + ec.message()};
    return std::unique_ptr<blob_store>(new filesystem_store(fs::path(root)));
}

}  // namespace integration::blobs
