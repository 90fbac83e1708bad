#include "batched_wal.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <mutex>
#include <new>
#include <string>

// SQLite writes each WAL frame with two system calls (its 24-byte header, then the page), and the
// frames of a commit one after another. This VFS sits over the default one and gathers a WAL's
// appended writes in memory, handing them to the file in one write when the commit's last frame
// is complete, before anything can see the commit: SQLite publishes a commit to readers (the
// wal-index header) only after its last frame was written, and it reads, syncs, truncates or
// sizes the WAL only through this file, which writes what it holds first. An error of that write
// fails the commit, as a failed frame write would. Every other file, and every other method,
// goes straight to the default VFS.
//
// Only appends are held. A write below the end of what this file wrote goes straight to the file
// after what is held: SQLite rewrites a spilled page in place, and after such a rewrite it
// rewrites the headers of the frames from there to the commit (new checksums) without a page
// after the last one, so a held commit header would stay in memory past its commit. Frames held
// when the write transaction ends (a spilled transaction rolled back) are dropped: they are not
// part of any commit, and written later they could land on frames another connection wrote since.

namespace integration::storage::sqlite {
namespace {

constexpr int frame_header_bytes = 24;
// SQLite's unix VFS writes at most 0x1ffff bytes per call (it masks the length): a larger commit
// is written in pieces of at most this many bytes.
constexpr std::size_t most_held = 0x1f000;

struct held_writes {
    std::string bytes;
    sqlite3_int64 offset = 0;   // of bytes[0] in the file
    sqlite3_int64 end = 0;      // past the last byte written or held since the WAL (re)started
    bool commit_frame = false;  // the header just held is a commit's last frame: write once its page is
    sqlite3_int64 os_writes = 0;
};

struct batched_file {
    sqlite3_file base;    // its methods are `methods` below
    sqlite3_file* under;  // the default VFS's file, in the memory after this struct
    held_writes* wal;     // a WAL's gathered writes; null for every other file
    batched_file* own_wal;   // a database file's open WAL (both are one connection's)
    batched_file* database;  // a WAL's database file
};

sqlite3_vfs* under_vfs(sqlite3_vfs* vfs) {
    return static_cast<sqlite3_vfs*>(vfs->pAppData);
}
batched_file* self(sqlite3_file* f) {
    return reinterpret_cast<batched_file*>(f);
}

int write_held(batched_file* f) {
    auto* w = f->wal;
    if (!w || w->bytes.empty()) return SQLITE_OK;
    int rc = f->under->pMethods->xWrite(f->under, w->bytes.data(), static_cast<int>(w->bytes.size()), w->offset);
    ++w->os_writes;
    w->bytes.clear();
    return rc;
}

int x_close(sqlite3_file* file) {
    auto* f = self(file);
    // Anything still held belongs to no commit (a commit writes what it holds at its last frame).
    delete f->wal;
    f->wal = nullptr;
    if (f->database) f->database->own_wal = nullptr;
    if (f->own_wal) f->own_wal->database = nullptr;
    return f->under->pMethods->xClose(f->under);
}

int x_read(sqlite3_file* file, void* out, int amount, sqlite3_int64 offset) {
    auto* f = self(file);
    if (int rc = write_held(f); rc != SQLITE_OK) return rc;
    return f->under->pMethods->xRead(f->under, out, amount, offset);
}

int x_write(sqlite3_file* file, void const* data, int amount, sqlite3_int64 offset) {
    auto* f = self(file);
    auto* w = f->wal;
    if (!w) return f->under->pMethods->xWrite(f->under, data, amount, offset);
    if (offset == 0) w->end = 0;  // the WAL's header: the log starts over
    auto const held_end = w->offset + static_cast<sqlite3_int64>(w->bytes.size());
    if (!w->bytes.empty() && (offset != held_end || offset < w->end ||
                              w->bytes.size() + static_cast<std::size_t>(amount) > most_held))
        if (int rc = write_held(f); rc != SQLITE_OK) return rc;
    if (offset < w->end) {  // in place: after what was held, straight to the file
        w->commit_frame = false;
        w->end = std::max(w->end, offset + amount);
        return f->under->pMethods->xWrite(f->under, data, amount, offset);
    }
    w->end = offset + amount;
    if (w->bytes.empty()) w->offset = offset;
    try {
        w->bytes.append(static_cast<char const*>(data), static_cast<std::size_t>(amount));
    } catch (std::bad_alloc const&) {  // nothing may be thrown through SQLite
        return SQLITE_NOMEM;
    }
    bool frame_header = amount == frame_header_bytes;
    if (frame_header) {
        // Bytes 4-7 of a frame header: the database size after the commit, or 0 if the frame does
        // not end a commit.
        auto const* h = static_cast<unsigned char const*>(data);
        w->commit_frame = (h[4] | h[5] | h[6] | h[7]) != 0;
        return SQLITE_OK;
    }
    if (w->commit_frame) {
        w->commit_frame = false;
        return write_held(f);
    }
    return SQLITE_OK;
}

int x_truncate(sqlite3_file* file, sqlite3_int64 size) {
    auto* f = self(file);
    if (int rc = write_held(f); rc != SQLITE_OK) return rc;
    if (f->wal) f->wal->end = std::min(f->wal->end, size);
    return f->under->pMethods->xTruncate(f->under, size);
}

int x_sync(sqlite3_file* file, int flags) {
    auto* f = self(file);
    if (int rc = write_held(f); rc != SQLITE_OK) return rc;
    return f->under->pMethods->xSync(f->under, flags);
}

int x_file_size(sqlite3_file* file, sqlite3_int64* size) {
    auto* f = self(file);
    if (int rc = write_held(f); rc != SQLITE_OK) return rc;
    return f->under->pMethods->xFileSize(f->under, size);
}

int x_lock(sqlite3_file* file, int level) {
    return self(file)->under->pMethods->xLock(self(file)->under, level);
}
int x_unlock(sqlite3_file* file, int level) {
    return self(file)->under->pMethods->xUnlock(self(file)->under, level);
}
int x_check_reserved_lock(sqlite3_file* file, int* out) {
    return self(file)->under->pMethods->xCheckReservedLock(self(file)->under, out);
}

int x_file_control(sqlite3_file* file, int op, void* arg) {
    auto* f = self(file);
    if (op == wal_os_writes_fcntl) {
        if (!f->wal) return SQLITE_NOTFOUND;
        *static_cast<sqlite3_int64*>(arg) = f->wal->os_writes;
        return SQLITE_OK;
    }
    return f->under->pMethods->xFileControl(f->under, op, arg);
}

int x_sector_size(sqlite3_file* file) {
    return self(file)->under->pMethods->xSectorSize(self(file)->under);
}
int x_device_characteristics(sqlite3_file* file) {
    return self(file)->under->pMethods->xDeviceCharacteristics(self(file)->under);
}
int x_shm_map(sqlite3_file* file, int page, int size, int extend, void volatile** out) {
    return self(file)->under->pMethods->xShmMap(self(file)->under, page, size, extend, out);
}
int x_shm_lock(sqlite3_file* file, int offset, int n, int flags) {
    auto* f = self(file);
    // SQLite's WAL write lock is the first lock slot; it is released when a write transaction
    // ends. What its WAL still holds then was written by no commit: drop it.
    constexpr int write_lock = 0;
    if (offset == write_lock && (flags & SQLITE_SHM_UNLOCK) && f->own_wal && f->own_wal->wal) {
        auto* w = f->own_wal->wal;
        w->bytes.clear();
        w->commit_frame = false;
    }
    return f->under->pMethods->xShmLock(f->under, offset, n, flags);
}
void x_shm_barrier(sqlite3_file* file) {
    self(file)->under->pMethods->xShmBarrier(self(file)->under);
}
int x_shm_unmap(sqlite3_file* file, int remove) {
    return self(file)->under->pMethods->xShmUnmap(self(file)->under, remove);
}
int x_fetch(sqlite3_file* file, sqlite3_int64 offset, int amount, void** out) {
    auto* u = self(file)->under;
    if (u->pMethods->iVersion < 3) {
        *out = nullptr;
        return SQLITE_OK;
    }
    return u->pMethods->xFetch(u, offset, amount, out);
}
int x_unfetch(sqlite3_file* file, sqlite3_int64 offset, void* page) {
    auto* u = self(file)->under;
    return u->pMethods->iVersion < 3 ? SQLITE_OK : u->pMethods->xUnfetch(u, offset, page);
}

sqlite3_io_methods const methods = {
    3,
    x_close,
    x_read,
    x_write,
    x_truncate,
    x_sync,
    x_file_size,
    x_lock,
    x_unlock,
    x_check_reserved_lock,
    x_file_control,
    x_sector_size,
    x_device_characteristics,
    x_shm_map,
    x_shm_lock,
    x_shm_barrier,
    x_shm_unmap,
    x_fetch,
    x_unfetch,
};

int x_open(sqlite3_vfs* vfs, char const* name, sqlite3_file* file, int flags, int* out_flags) {
    auto* f = self(file);
    f->base.pMethods = nullptr;
    f->under = reinterpret_cast<sqlite3_file*>(f + 1);
    f->wal = nullptr;
    f->own_wal = nullptr;
    f->database = nullptr;
    auto* u = under_vfs(vfs);
    if (int rc = u->xOpen(u, name, f->under, flags, out_flags); rc != SQLITE_OK) {
        if (f->under->pMethods) f->under->pMethods->xClose(f->under);
        return rc;
    }
    if (f->under->pMethods == nullptr) return SQLITE_CANTOPEN;
    if (f->under->pMethods->iVersion < 2) {  // no shared memory, so no WAL: nothing to wrap
        f->under->pMethods->xClose(f->under);
        return SQLITE_CANTOPEN;
    }
    if (flags & SQLITE_OPEN_WAL) f->wal = new (std::nothrow) held_writes;
    if ((flags & SQLITE_OPEN_WAL) && !f->wal) {
        f->under->pMethods->xClose(f->under);
        return SQLITE_NOMEM;
    }
    f->base.pMethods = &methods;
    if (f->wal) {
        // The database file this WAL belongs to (its write lock ends what the WAL holds).
        if (auto* db = sqlite3_database_file_object(name); db && db->pMethods == &methods) {
            f->database = self(db);
            f->database->own_wal = f;
        }
    }
    return SQLITE_OK;
}

int x_delete(sqlite3_vfs* vfs, char const* name, int sync_dir) {
    return under_vfs(vfs)->xDelete(under_vfs(vfs), name, sync_dir);
}
int x_access(sqlite3_vfs* vfs, char const* name, int flags, int* out) {
    return under_vfs(vfs)->xAccess(under_vfs(vfs), name, flags, out);
}
int x_full_pathname(sqlite3_vfs* vfs, char const* name, int size, char* out) {
    return under_vfs(vfs)->xFullPathname(under_vfs(vfs), name, size, out);
}
void* x_dl_open(sqlite3_vfs* vfs, char const* name) {
    return under_vfs(vfs)->xDlOpen(under_vfs(vfs), name);
}
void x_dl_error(sqlite3_vfs* vfs, int size, char* out) {
    under_vfs(vfs)->xDlError(under_vfs(vfs), size, out);
}
void (*x_dl_sym(sqlite3_vfs* vfs, void* lib, char const* symbol))(void) {
    return under_vfs(vfs)->xDlSym(under_vfs(vfs), lib, symbol);
}
void x_dl_close(sqlite3_vfs* vfs, void* lib) {
    under_vfs(vfs)->xDlClose(under_vfs(vfs), lib);
}
int x_randomness(sqlite3_vfs* vfs, int size, char* out) {
    return under_vfs(vfs)->xRandomness(under_vfs(vfs), size, out);
}
int x_sleep(sqlite3_vfs* vfs, int micros) {
    return under_vfs(vfs)->xSleep(under_vfs(vfs), micros);
}
int x_current_time(sqlite3_vfs* vfs, double* out) {
    return under_vfs(vfs)->xCurrentTime(under_vfs(vfs), out);
}
int x_get_last_error(sqlite3_vfs* vfs, int size, char* out) {
    return under_vfs(vfs)->xGetLastError(under_vfs(vfs), size, out);
}
int x_current_time_int64(sqlite3_vfs* vfs, sqlite3_int64* out) {
    return under_vfs(vfs)->xCurrentTimeInt64(under_vfs(vfs), out);
}

}  // namespace

char const* batched_wal_vfs() {
    static sqlite3_vfs vfs{};
    static std::once_flag once;
    static bool registered = false;
    std::call_once(once, [] {
        auto* u = sqlite3_vfs_find(nullptr);
        if (!u || u->iVersion < 2) return;
        vfs.iVersion = 2;
        vfs.szOsFile = static_cast<int>(sizeof(batched_file)) + u->szOsFile;
        vfs.mxPathname = u->mxPathname;
        vfs.zName = "integration-batched-wal";
        vfs.pAppData = u;
        vfs.xOpen = x_open;
        vfs.xDelete = x_delete;
        vfs.xAccess = x_access;
        vfs.xFullPathname = x_full_pathname;
        vfs.xDlOpen = x_dl_open;
        vfs.xDlError = x_dl_error;
        vfs.xDlSym = x_dl_sym;
        vfs.xDlClose = x_dl_close;
        vfs.xRandomness = x_randomness;
        vfs.xSleep = x_sleep;
        vfs.xCurrentTime = x_current_time;
        vfs.xGetLastError = x_get_last_error;
        vfs.xCurrentTimeInt64 = x_current_time_int64;
        registered = sqlite3_vfs_register(&vfs, 0) == SQLITE_OK;
    });
    return registered ? vfs.zName : nullptr;
}

}  // namespace integration::storage::sqlite
