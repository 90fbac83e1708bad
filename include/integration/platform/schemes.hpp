#ifndef INTEGRATION_PLATFORM_SCHEMES_HPP
#define INTEGRATION_PLATFORM_SCHEMES_HPP

/** @file
 *  Backends named by URL: each backend registers a scheme for the port it implements
 *  (`sqlite:` for the store, `local:` for secrets, `file:` for blobs), and the platform opens
 *  whatever URL it is given through this registry. A new backend is one component plus one scheme.
 */

#include <integration/core/error.hpp>
#include <integration/export.hpp>
#include <integration/ports/blob_store.hpp>
#include <integration/ports/clock.hpp>
#include <integration/ports/secret_store.hpp>
#include <integration/ports/store.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace integration {

/** A backend URL taken apart: `sqlite:///var/lib/integration.db` has scheme `sqlite` and path
 *  `/var/lib/integration.db`; `sqlite:data/integration.db` a relative path. */
struct INTEGRATION_EXPORT backend_url {
    std::string text;                           ///< As given.
    std::string scheme;                         ///< Lower case.
    std::string host;                           ///< Empty for local files.
    std::string path;                           ///< Percent-decoded.
    std::map<std::string, std::string> params;  ///< The query, decoded.

    /** Parses `SCHEME:PATH` or `SCHEME://HOST/PATH`; an error says what form is expected. */
    static result<backend_url> parse(std::string_view text);
    /** The path of a local file or directory, absolute and lexically normal: a relative one is
     *  resolved against the current directory now, so that a backend opened with it keeps its
     *  files when the process changes directory later. An error when the URL names a host or no
     *  path. */
    result<std::string> local_path() const;
};

/** What a backend may need besides its URL. */
struct backend_environment {
    integration::clock const* clock = nullptr;  ///< Never null when an opener is called.
    std::string source = "integration";         ///< The envelope `source` of events.
};

/** Opens backends by URL scheme, one table per port. */
class INTEGRATION_EXPORT scheme_registry {
public:
    template <class Port>
    using opener = std::function<result<std::unique_ptr<Port>>(backend_url const&, backend_environment const&)>;

    /** Registers `scheme` (lower case) for the store port; a later call replaces an earlier one. */
    void add_store(std::string scheme, opener<storage::store> open);
    void add_secret_store(std::string scheme, opener<credentials::secret_store> open);
    void add_blob_store(std::string scheme, opener<blobs::blob_store> open);

    /** Opens the backend `url` names. A malformed URL, or a scheme nothing registered, is
     *  `errc::invalid_argument` naming the schemes that are known for that port. */
    result<std::unique_ptr<storage::store>> open_store(std::string_view url, backend_environment const& env) const;
    result<std::unique_ptr<credentials::secret_store>> open_secret_store(std::string_view url,
                                                                         backend_environment const& env) const;
    result<std::unique_ptr<blobs::blob_store>> open_blob_store(std::string_view url,
                                                               backend_environment const& env) const;

private:
    std::map<std::string, opener<storage::store>, std::less<>> stores_;
    std::map<std::string, opener<credentials::secret_store>, std::less<>> secret_stores_;
    std::map<std::string, opener<blobs::blob_store>, std::less<>> blob_stores_;
};

/** The schemes of the backends built into this package:
 *  - store: `sqlite:///PATH` (the SQLite store);
 *  - secrets: `local:///PATH?key_file=FILE` (the local vault; the key file defaults to
 *    `master.key` beside the database, and `INTEGRATION_MASTER_KEY` overrides it);
 *  - blobs: `file:///DIR` (a directory) and `sqlite:///PATH` (one SQLite file).
 *
 *  A relative `PATH`, `DIR` or `FILE` (`sqlite:integration.db`) is resolved against the current
 *  directory once, when the backend opens: a later change of directory does not move it.
 *
 *  @par Example
 *  @code
 *  auto schemes = integration::builtin_schemes();
 *  schemes.add_store("memory", open_my_memory_store);  // a backend of your own
 *  auto p = integration::open_platform({.store = "memory:", .schemes = &schemes}).value();
 *  @endcode
 */
INTEGRATION_EXPORT scheme_registry builtin_schemes();

}  // namespace integration

#endif
