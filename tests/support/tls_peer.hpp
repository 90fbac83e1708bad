#ifndef INTEGRATION_TESTS_SUPPORT_TLS_PEER_HPP
#define INTEGRATION_TESTS_SUPPORT_TLS_PEER_HPP

// An HTTPS peer on 127.0.0.1 with a self-signed certificate made at test time: the `openssl` CLI
// writes a P-256 key and certificate (for "tls.test" and 127.0.0.1) into a temporary directory and
// tests/peers/tls_peer.mjs serves them with Node's https module. Needs `node` and `openssl`: the
// test command installs both, so a missing one fails the test (it never skips).

#include "support/child_process.hpp"

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

#ifndef INTEGRATION_PEERS_DIR
#error "INTEGRATION_PEERS_DIR must name the tests/peers directory"
#endif

namespace integration::testing {

class tls_peer {
public:
    /** Throws, failing the test, when `node` or `openssl` is not on the PATH. */
    tls_peer()
        : dir_{make_certificate()},
          process_({"node", std::string(INTEGRATION_PEERS_DIR) + "/tls_peer.mjs", (dir_.path / "key.pem").string(),
                    (dir_.path / "cert.pem").string()}) {
        auto const line = process_.read_line();
        if (!line.starts_with("PORT ")) throw std::runtime_error("tls_peer.mjs did not start: \"" + line + "\"");
        port_ = static_cast<std::uint16_t>(std::stoi(line.substr(5)));
    }
    ~tls_peer() = default;  // stops the peer first (members in reverse order), then removes the files
    tls_peer(tls_peer const&) = delete;
    tls_peer& operator=(tls_peer const&) = delete;

    std::uint16_t port() const { return port_; }
    /** The self-signed certificate, usable as a CA file to trust this peer. */
    std::string cert_file() const { return (dir_.path / "cert.pem").string(); }

private:
    struct temp_dir {
        std::filesystem::path path;
        ~temp_dir() {
            std::error_code ignored;
            std::filesystem::remove_all(path, ignored);
        }
    };

    static void require_tools() {
        if (std::system("command -v node >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1") != 0)
            throw std::runtime_error("the TLS tests need node and openssl on the PATH (scripts/test.sh installs both)");
    }

    static std::filesystem::path make_certificate() {
        require_tools();
        std::string pattern = (std::filesystem::temp_directory_path() / "tls_peer.XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        std::filesystem::path dir = pattern;
        auto const command =
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
            " -subj /CN=tls.test -addext subjectAltName=DNS:tls.test,IP:127.0.0.1"
            " -keyout '" +
            (dir / "key.pem").string() + "' -out '" + (dir / "cert.pem").string() + "' >/dev/null 2>&1";
        if (std::system(command.c_str()) != 0) {
            std::filesystem::remove_all(dir);
            throw std::runtime_error("openssl could not make a self-signed certificate");
        }
        return dir;
    }

    temp_dir dir_;
    child_process process_;
    std::uint16_t port_ = 0;
};

}  // namespace integration::testing

#endif
