#ifndef INTEGRATION_SRC_STORAGE_SQLITE_SCHEMA_HPP
#define INTEGRATION_SRC_STORAGE_SQLITE_SCHEMA_HPP

#include "../../detail/sqlite/connection.hpp"

namespace integration::storage::sqlite {

/** Applies pending forward-only migrations; refuses a database newer than this library. */
result<void> migrate(database& db);

}  // namespace integration::storage::sqlite

#endif
