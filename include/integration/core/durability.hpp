#ifndef INTEGRATION_CORE_DURABILITY_HPP
#define INTEGRATION_CORE_DURABILITY_HPP

/** @file
 *  How soon a write must reach the disk. Stores and blob stores accept it per write, the way
 *  PostgreSQL accepts `synchronous_commit` per transaction.
 */

namespace integration {

/** How soon a committed write must be on disk. */
enum class durability {
    /** On disk when the call returns (one fsync, shared by writes committed together). */
    immediate,
    /** Committed and visible when the call returns and safe if the process is killed; on disk
     *  within the backend's flush interval. A power loss may lose the last interval. Many writes
     *  then share one fsync. */
    deferred,
};

}  // namespace integration

#endif
