#ifndef INTEGRATION_SRC_DETAIL_SQL_VALUE_HPP
#define INTEGRATION_SRC_DETAIL_SQL_VALUE_HPP

// A value bound to a statement parameter or read from a column, in every SQL backend.

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace integration::storage::sql {

using value = std::variant<std::nullptr_t, std::int64_t, double, std::string, std::vector<unsigned char>>;

}  // namespace integration::storage::sql

#endif
