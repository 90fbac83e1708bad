#include <integration/backends/filesystem/filesystem_blob_store.hpp>
#include <integration/ports/blob_store.hpp>

#include "../../detail/deferred_flush.hpp"
#include "../../detail/blob_keys.hpp"
#include "../../detail/sync_folder.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>

namespace integration::blobs {
namespace {

namespace fs = std::filesystem;

// Numbers the temporary files of this process's puts (every store of it: two stores on one root
// must not pick the same name).
std::atomic<std::uint64_t> next_temporary{0};

// Whether `name` is a put's temporary file (`<name>~<pid>.<n>tmp`), which a crash may leave.
bool is_temporary(std::string_view name) {
    auto tilde = name.rfind('~');
    if (tilde == std::string_view::npos || !name.ends_with("tmp")) return false;
    auto digits = name.substr(tilde + 1, name.size() - tilde - 4);
    auto dot = digits.find('.');
    return dot != std::string_view::npos && dot > 0 && dot + 1 < digits.size() &&
           digits.find_first_not_of("0123456789.") == std::string_view::npos && digits.find('.', dot + 1) == std::string_view::npos;
}

class filesystem_store final : public blob_store {
public:
    filesystem_store(fs::path root, std::chrono::milliseconds flush_interval)
        : root_(std::move(root)), flush_(flush_interval, [this] { sync_root(); }) {}

    result<std::string> put(std::string const& tenant, std::string const& key, std::string_view data,
                            durability d) override {
        if (auto r = detail::validate_put(tenant, key); !r) return r.error();
        auto path = root_ / tenant / key;
        auto const parent = path.parent_path();
        // A temporary file of this put's own ('~' is in no key: no blob is ever named like one),
        // so that two puts of one key, from two threads or processes, never write one file. A
        // name taken already (left by a crash of a process that had this pid) is skipped.
        fs::path tmp;
        fs::path first_new;  // the highest directory this put creates
        int fd = -1;
        // A concurrent `remove` may take a folder away once it is empty, between its creation
        // here and the file's: then create it again (the file, once open, keeps it non-empty).
        for (int tries = 0; fd < 0 && tries < 100; ++tries) {
            std::error_code ec;
            for (auto p = parent; p != root_ && !fs::exists(p, ec); p = p.parent_path()) first_new = p;
            fs::create_directories(parent, ec);
            // A folder went meanwhile: gone under the creation (ENOENT), or between its mkdir's
            // EEXIST and the check that it is a folder.
            // Or a blob stands where a folder should (`a` for `a/b`): no retry makes room.
            if (ec == std::errc::no_such_file_or_directory || ec == std::errc::file_exists || ec == std::errc::not_a_directory) {
                if (is_blob_above(tenant, parent)) return folder_clash(key);
                continue;
            }
            if (ec) return error{errc::unavailable, "blob store: cannot create " + parent.string() + ": " + ec.message()};
            tmp = path;
            tmp += "~" + std::to_string(::getpid()) + "." + std::to_string(next_temporary.fetch_add(1)) + "tmp";
            fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
            if (fd < 0 && errno != ENOENT && errno != EEXIST) break;
        }
        if (fd < 0 && errno == ENOTDIR && is_blob_above(tenant, parent)) return folder_clash(key);
        if (fd < 0) return error{errc::unavailable, "blob store: cannot write " + tmp.string() + ": " + std::strerror(errno)};
        std::size_t written = 0;
        while (written < data.size()) {
            auto n = ::write(fd, data.data() + written, data.size() - written);
            if (n <= 0) break;
            written += static_cast<std::size_t>(n);
        }
        bool ok = written == data.size() && (d == durability::deferred || ::fsync(fd) == 0);
        ::close(fd);
        if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
            int const why = errno;
            ::unlink(tmp.c_str());
            if (ok && (why == EISDIR || why == ENOTEMPTY || why == EEXIST)) return folder_clash(key);
            return error{errc::unavailable, "blob store: writing " + path.string() + " failed: " + std::strerror(why)};
        }
        if (d == durability::deferred) {
            flush_.mark();
            return reference(tenant, key);
        }
        // Durable means the names too: the file's entry in its folder, and each new folder's in
        // its parent, or a power loss may keep the commit that refers to the blob and lose it.
        bool synced = integration::detail::sync_folder(parent.c_str());
        if (!first_new.empty())
            for (auto p = parent; synced; p = p.parent_path()) {
                synced = integration::detail::sync_folder(p.parent_path().c_str());
                if (p == first_new) break;
            }
        if (!synced) return error{errc::unavailable, "blob store: syncing the folders of " + path.string() + " failed: " + std::strerror(errno)};
        return reference(tenant, key);
    }

    result<std::string> get(std::string const& tenant, std::string const& ref) override {
        auto path = locate(tenant, ref);
        if (!path) return path.error();
        // Only a file that is not there is "not found" (a reader takes that as gone for good); a
        // file it cannot open or read now (no descriptors left, permissions, I/O) is an outage.
        // System calls, not a stream: libstdc++'s file buffer throws on a read error.
        auto missing = [&] { return error{errc::not_found, "blob " + ref + " does not exist"}; };
        auto outage = [&](char const* what) {
            return error{errc::unavailable, std::string("blob store: cannot ") + what + " " + ref + ": " + std::strerror(errno)};
        };
        int fd = ::open(path->c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return errno == ENOENT || errno == ENOTDIR ? missing() : outage("open");
        std::string out;
        char buf[64 * 1024];
        for (;;) {
            auto n = ::read(fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                auto failed = errno == EISDIR ? missing() : outage("read");
                ::close(fd);
                return failed;
            }
            if (n == 0) break;
            out.append(buf, static_cast<std::size_t>(n));
        }
        ::close(fd);
        return out;
    }

    result<void> remove(std::string const& tenant, std::string const& ref) override {
        auto path = locate(tenant, ref);
        if (!path) return path.error();
        std::error_code ec;
        fs::remove(*path, ec);
        if (ec) return error{errc::unavailable, "blob store: cannot delete " + ref + ": " + ec.message()};
        remove_empty_folders(tenant, path->parent_path());
        return {};
    }

    result<std::size_t> purge_older_than(time_point cutoff, std::string_view key_prefix) override {
        std::size_t n = 0;
        std::vector<std::pair<std::string, fs::path>> emptied;
        auto ec = walk(root_, [&](fs::directory_entry const& file, std::error_code& failed) {
            // <root>/<tenant>/<key>: the key is the path below the tenant's folder.
            auto relative = file.path().lexically_relative(root_).generic_string();
            auto slash = relative.find('/');
            if (slash == std::string::npos) return;
            // A temporary file that old was left by a put that crashed: whatever its key, it goes
            // (uncounted: it was no blob).
            bool const left_over = is_temporary(file.path().filename().native());
            if (!left_over && !std::string_view(relative).substr(slash + 1).starts_with(key_prefix)) return;
            // A blob removed or replaced since its folder was read is no longer this purge's.
            std::error_code gone;
            auto written = file.last_write_time(gone);
            if (gone) return;
            if (std::chrono::file_clock::to_sys(written) < cutoff && fs::remove(file.path(), failed)) {
                if (!left_over) ++n;
                emptied.emplace_back(relative.substr(0, slash), file.path().parent_path());
            }
        });
        if (ec) return error{errc::unavailable, "blob store: purge stopped: " + ec.message()};
        // After the walk, which must not see its folders go.
        for (auto const& [tenant, folder] : emptied) remove_empty_folders(tenant, folder);
        return n;
    }

private:
    // A blob is a file, so `a` and `a/b` cannot both be blobs here (the SQLite store could hold
    // both, but a key must mean the same in every backend).
    static error folder_clash(std::string const& key) {
        return error{errc::invalid_argument, "blob key " + key + " names a folder of other blobs, or lies below a blob: "
                                             "a key cannot be both a blob and a prefix of another key's folder"};
    }

    // Whether a file (a blob) stands where `folder`, or a folder above it, should be.
    bool is_blob_above(std::string const& tenant, fs::path folder) const {
        std::error_code ec;
        for (auto const top = root_ / tenant; folder != top && folder.native().starts_with(top.native()); folder = folder.parent_path())
            if (fs::is_regular_file(fs::symlink_status(folder, ec))) return true;
        return false;
    }

    // Calls `on_file` for each regular file below `folder`, which may set the error that stops
    // the walk. A folder that a concurrent `remove` takes away meanwhile is skipped.
    template <class F>
    static std::error_code walk(fs::path const& folder, F&& on_file) {
        std::error_code ec;
        fs::directory_iterator it(folder, ec);
        if (ec) return ec == std::errc::no_such_file_or_directory ? std::error_code{} : ec;
        for (; it != fs::directory_iterator(); it.increment(ec)) {
            if (ec) return ec;
            std::error_code kind;
            auto const type = it->symlink_status(kind).type();  // a link is not followed
            if (type == fs::file_type::directory) {
                if (auto failed = walk(it->path(), on_file)) return failed;
            } else if (type == fs::file_type::regular) {
                on_file(*it, ec);
                if (ec) return ec;
            }
        }
        return ec;
    }

    // Keys such as `runs/<id>/response` give each blob a folder of its own: once its last blob
    // is gone, the folder goes too, and each parent left empty, up to the tenant's folder. A
    // folder that is not empty (or is being filled: see `put`) stays.
    void remove_empty_folders(std::string const& tenant, fs::path folder) const {
        auto const top = root_ / tenant;
        for (; folder != top && folder.native().starts_with(top.native()); folder = folder.parent_path())
            if (::rmdir(folder.c_str()) != 0) break;
    }

    result<fs::path> locate(std::string const& tenant, std::string const& ref) const {
        auto key = detail::key_of(tenant, ref);
        if (!key) return key.error();
        return root_ / tenant / *key;
    }

    // One syncfs makes every deferred file (data, rename and new directories) durable at once.
    void sync_root() {
        if (int fd = ::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); fd >= 0) {
            (void)::syncfs(fd);
            ::close(fd);
        }
    }

    fs::path root_;
    integration::detail::deferred_flush flush_;  // last: flushes before the members above go away
};

}  // namespace

result<std::unique_ptr<blob_store>> open_filesystem_blob_store(std::string root, std::chrono::milliseconds flush_interval) {
    std::error_code ec;
    fs::create_directories(root, ec);
    if (ec) return error{errc::unavailable, "blob store: cannot create " + root + ": " + ec.message()};
    // Every put and get opens files by name: a relative root would mean another folder after
    // the process changes its working directory.
    auto absolute = fs::absolute(root, ec);
    if (ec) return error{errc::unavailable, "blob store: cannot resolve " + root + ": " + ec.message()};
    return std::unique_ptr<blob_store>(new filesystem_store(std::move(absolute), flush_interval));
}

}  // namespace integration::blobs
