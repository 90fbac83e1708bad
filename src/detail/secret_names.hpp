#ifndef INTEGRATION_SRC_DETAIL_SECRET_NAMES_HPP
#define INTEGRATION_SRC_DETAIL_SECRET_NAMES_HPP

#include <integration/core/error.hpp>

#include <boost/json/value.hpp>

#include <string>

namespace integration::detail {

/** Refuses (invariant_violation, naming its path) a string at any depth of `v` under a name that
 *  holds secret material (`secret`, `password`, `token`, `apiKey`, ...): such values belong in the
 *  secret store, never in stored metadata. `secret_name`: `v` itself is under such a name. */
result<void> refuse_secret_parameters(boost::json::value const& v, std::string const& path, bool secret_name = false);

}  // namespace integration::detail

#endif
