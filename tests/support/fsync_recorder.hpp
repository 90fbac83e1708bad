#ifndef INTEGRATION_TESTS_SUPPORT_FSYNC_RECORDER_HPP
#define INTEGRATION_TESTS_SUPPORT_FSYNC_RECORDER_HPP

// Which files and folders the library syncs: every test executable defines `fsync` itself
// (fsync_recorder.cpp), and the statically linked library calls that definition, which passes
// the call on to the kernel and notes the path while a recording runs.

#include <functional>
#include <set>
#include <string>

namespace integration::testing {

/** The paths fsync was called on (from any thread) while `f` ran. */
std::set<std::string> fsynced_during(std::function<void()> const& f);

}  // namespace integration::testing

#endif
