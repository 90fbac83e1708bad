#ifndef INTEGRATION_DETAIL_SYNC_FOLDER_HPP
#define INTEGRATION_DETAIL_SYNC_FOLDER_HPP

#include <fcntl.h>
#include <unistd.h>

namespace integration::detail {

/** Makes the entries of folder `path` durable (a file created or renamed in it); false on failure
 *  with `errno` set. */
inline bool sync_folder(char const* path) {
    int fd = ::open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = ::fsync(fd) == 0;
    ::close(fd);
    return ok;
}

}  // namespace integration::detail

#endif
