#ifndef INTEGRATION_SRC_DETAIL_SQLITE_BATCHED_WAL_HPP
#define INTEGRATION_SRC_DETAIL_SQLITE_BATCHED_WAL_HPP

// A VFS over SQLite's default one that writes each commit's WAL frames with one system call
// (SQLite alone makes two per frame); see batched_wal.cpp.

namespace integration::storage::sqlite {

/** The name to open a database with (`sqlite3_open_v2`'s last argument), registered on the first
 *  call; null if the default VFS cannot carry a WAL (then open with the default). */
char const* batched_wal_vfs();

/** A file control (`xFileControl` of a WAL file opened through `batched_wal_vfs`, reached with
 *  `SQLITE_FCNTL_JOURNAL_POINTER`) that stores in its `sqlite3_int64*` argument how many writes
 *  that WAL has handed to the operating system. */
inline constexpr int wal_os_writes_fcntl = 0x1e7a1;

}  // namespace integration::storage::sqlite

#endif
