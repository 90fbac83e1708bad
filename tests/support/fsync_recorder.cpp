#include "support/fsync_recorder.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <utility>

namespace {

std::mutex synced_mutex;
std::set<std::string> synced_paths;
std::atomic<bool> recording{false};

}  // namespace

extern "C" int fsync(int fd) {
    if (recording) {
        char target[4096];
        auto n = ::readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), target, sizeof target);
        std::lock_guard lock(synced_mutex);
        synced_paths.emplace(target, n > 0 ? static_cast<std::size_t>(n) : 0);
    }
    return static_cast<int>(::syscall(SYS_fsync, fd));
}

namespace integration::testing {

std::set<std::string> fsynced_during(std::function<void()> const& f) {
    {
        std::lock_guard lock(synced_mutex);
        synced_paths.clear();
    }
    recording = true;
    f();
    recording = false;
    std::lock_guard lock(synced_mutex);
    return std::exchange(synced_paths, {});
}

}  // namespace integration::testing
