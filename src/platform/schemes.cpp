#include <integration/platform/schemes.hpp>

// INTEGRATION_HAS_<BACKEND>: which optional backends this build has (CMakeLists.txt).
#if INTEGRATION_HAS_FILESYSTEM
#include <integration/backends/filesystem/filesystem_blob_store.hpp>
#endif
#if INTEGRATION_HAS_LOCAL_VAULT
#include <integration/backends/local_vault/local_secret_store.hpp>
#endif
#if INTEGRATION_HAS_SQLITE
#include <integration/backends/sqlite/sqlite_blob_store.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>
#endif

#include "../detail/validate.hpp"

#include <boost/url/parse.hpp>

#include <algorithm>
#include <cctype>
#include <filesystem>

namespace integration {
namespace {

template <class Port>
using opener_map = std::map<std::string, scheme_registry::opener<Port>, std::less<>>;

template <class Port>
result<std::unique_ptr<Port>> open_with(opener_map<Port> const& openers, char const* port, std::string_view text,
                                        backend_environment const& env) {
    auto url = backend_url::parse(text);
    if (!url) return url.error();
    auto it = openers.find(url->scheme);
    if (it == openers.end()) {
        std::string known;
        for (auto const& [scheme, open] : openers) known += (known.empty() ? "" : ", ") + scheme + ":";
        return error{errc::invalid_argument, std::string(port) + " URL " + detail::url_without_secrets(url->text) + ": no backend for the scheme " +
                                                 url->scheme +
                                                 ": in this build; known: " + (known.empty() ? "none" : known)};
    }
    auto opened = it->second(*url, env);
    if (!opened)
        return error{opened.error().code(), std::string(port) + " " + detail::url_without_secrets(url->text) + ": " + opened.error().detail()};
    return opened;
}

// A relative path is resolved once, against the directory current when the backend opens: kept
// relative, each use would look it up in whatever directory the process has moved to since.
result<std::string> absolute_path(std::string const& path) {
    std::error_code ec;
    auto out = std::filesystem::absolute(path, ec);
    if (ec)
        return error{errc::invalid_argument,
                     "cannot resolve the path '" + path + "' (" + ec.message() + "); give an absolute path"};
    return out.lexically_normal().string();
}

/** Refuses a parameter the built-in opener of `url` does not read: a misspelt one (`keyfile=`)
 *  would be dropped in silence, and the backend opened as if it were not there. */
result<void> takes_params(backend_url const& url, std::initializer_list<std::string_view> known) {
    for (auto const& [name, value] : url.params)
        if (std::find(known.begin(), known.end(), name) == known.end()) {
            std::string takes = "no parameters";
            for (auto k : known) takes = (takes == "no parameters" ? "only " : takes + ", ") + std::string(k);
            return error{errc::invalid_argument,
                         "a " + url.scheme + ": URL takes " + takes + "; '" + name + "' is not one of them"};
        }
    return {};
}

}  // namespace

result<backend_url> backend_url::parse(std::string_view text) {
    auto bad = [&](std::string why) {
        // A URL with a user or a query may hold a password: only its scheme is repeated then.
        auto const risky = text.find_first_of("@?#");
        auto shown = risky == std::string_view::npos
                         ? "'" + std::string(text) + "'"
                         : "'" + std::string(text.substr(0, std::min(text.find(':'), risky))) + ":...'";
        return error{errc::invalid_argument, shown + " is not a backend URL (" + why +
                                                 "); expected SCHEME:///PATH, e.g. sqlite:///var/lib/integration.db"};
    };
    if (text.empty()) return bad("it is empty");
    auto u = boost::urls::parse_uri(text);
    if (!u) return bad(u.error().message());
    backend_url out;
    out.text = std::string(text);
    out.scheme = std::string(u->scheme());
    std::transform(out.scheme.begin(), out.scheme.end(), out.scheme.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    // Not repeated: the URL would put the password in an error message and a log.
    if (u->has_userinfo())
        return error{errc::invalid_argument, "a " + std::string(u->scheme()) +
                                                 ": URL carries a user name or password; give secrets to the backend "
                                                 "another way (its key file or environment)"};
    out.host = std::string(u->host_address());
    out.path = std::string(u->path());
    for (auto const& p : u->params()) out.params[p.key] = p.value;
    return out;
}

result<std::string> backend_url::local_path() const {
    if (!host.empty() && host != "localhost")
        return error{errc::invalid_argument, "a " + scheme + ": URL names a local path, not the host " + host +
                                                 "; write " + scheme + ":///absolute/path or " + scheme +
                                                 ":relative/path"};
    // A file has no port, and a fragment is not sent anywhere: either is a mistake in the URL.
    if (auto u = boost::urls::parse_uri(text); u && (u->has_port() || u->has_fragment()))
        return error{errc::invalid_argument, "a " + scheme + ": URL names a local path and takes no " +
                                                 (u->has_port() ? "port" : "fragment (#...)")};
    if (path.empty())
        return error{errc::invalid_argument, "a " + scheme + ": URL needs a path, e.g. " + scheme +
                                                 ":///var/lib/integration/" +
                                                 (scheme == "file" ? "blobs" : "integration.db")};
    return absolute_path(path);
}

void scheme_registry::add_store(std::string scheme, opener<storage::store> open) {
    stores_[std::move(scheme)] = std::move(open);
}
void scheme_registry::add_secret_store(std::string scheme, opener<credentials::secret_store> open) {
    secret_stores_[std::move(scheme)] = std::move(open);
}
void scheme_registry::add_blob_store(std::string scheme, opener<blobs::blob_store> open) {
    blob_stores_[std::move(scheme)] = std::move(open);
}

result<std::unique_ptr<storage::store>> scheme_registry::open_store(std::string_view url,
                                                                    backend_environment const& env) const {
    return open_with(stores_, "store", url, env);
}
result<std::unique_ptr<credentials::secret_store>> scheme_registry::open_secret_store(
    std::string_view url, backend_environment const& env) const {
    return open_with(secret_stores_, "secrets", url, env);
}
result<std::unique_ptr<blobs::blob_store>> scheme_registry::open_blob_store(std::string_view url,
                                                                            backend_environment const& env) const {
    return open_with(blob_stores_, "blobs", url, env);
}

scheme_registry builtin_schemes() {
    scheme_registry r;
#if INTEGRATION_HAS_SQLITE
    r.add_store("sqlite",
                [](backend_url const& url, backend_environment const& env) -> result<std::unique_ptr<storage::store>> {
                    if (auto r = takes_params(url, {}); !r) return r.error();
                    auto path = url.local_path();
                    if (!path) return path.error();
                    return storage::open_sqlite_store({.path = *path, .clock = env.clock, .source = env.source});
                });
    r.add_blob_store(
        "sqlite",
        [](backend_url const& url, backend_environment const& env) -> result<std::unique_ptr<blobs::blob_store>> {
            if (auto r = takes_params(url, {}); !r) return r.error();
            auto path = url.local_path();
            if (!path) return path.error();
            return blobs::open_sqlite_blob_store({.path = *path, .clock = env.clock});
        });
#endif
#if INTEGRATION_HAS_LOCAL_VAULT
    r.add_secret_store("local",
                       [](backend_url const& url,
                          backend_environment const& env) -> result<std::unique_ptr<credentials::secret_store>> {
                           if (auto r = takes_params(url, {"key_file"}); !r) return r.error();
                           auto path = url.local_path();
                           if (!path) return path.error();
                           auto key = url.params.find("key_file");
                           auto beside = (std::filesystem::path(*path).parent_path() / "master.key").string();
                           auto key_file = absolute_path(key != url.params.end() ? key->second : beside);
                           if (!key_file) return key_file.error();
                           auto vault = credentials::open_local_secret_store(
                               {.path = *path, .key_file = *key_file, .clock = env.clock});
                           if (!vault) return vault.error();
                           return std::unique_ptr<credentials::secret_store>(std::move(*vault));
                       });
#endif
#if INTEGRATION_HAS_FILESYSTEM
    r.add_blob_store(
        "file", [](backend_url const& url, backend_environment const&) -> result<std::unique_ptr<blobs::blob_store>> {
            if (auto r = takes_params(url, {}); !r) return r.error();
            auto path = url.local_path();
            if (!path) return path.error();
            return blobs::open_filesystem_blob_store(*path);
        });
#endif
    return r;
}

}  // namespace integration
