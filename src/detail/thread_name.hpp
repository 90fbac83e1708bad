#pragma once
// Names the calling thread so `top -H`, `perf report --sort comm` and gdb tell the library's
// threads apart. Linux keeps at most 15 characters; longer names are cut.

#include <pthread.h>

#include <string>

namespace integration::detail {

inline void name_this_thread(std::string name) {
    if (name.size() > 15) name.resize(15);
    (void)pthread_setname_np(pthread_self(), name.c_str());
}

}  // namespace integration::detail
