#include <integration/services/fingerprint.hpp>

#include "../detail/crypto.hpp"

namespace integration::credentials {

result<fingerprinter> fingerprinter::from_key(secret_bytes key) {
    if (key.size() < 32) return error{errc::invalid_argument, "a fingerprint key needs at least 32 bytes"};
    return fingerprinter(std::move(key));
}

result<fingerprinter> fingerprinter::load_or_create(std::string const& key_file) {
    auto text = crypto::read_private_file(key_file);
    if (!text && text.error() == errc::not_found) {
        auto key = crypto::random_key();
        auto hex = crypto::to_hex(key.data(), key.size());
        auto w = crypto::create_private_file(key_file, hex + "\n");
        std::fill(hex.begin(), hex.end(), '\0');
        if (w) return fingerprinter(std::move(key));
        // Another process opening the same data directory created it first: its key is the one.
        if (w.error() != errc::already_exists) return w.error();
        text = crypto::read_private_file(key_file);
    }
    if (!text) return text.error();
    auto view = text->view();
    while (!view.empty() && (view.back() == '\n' || view.back() == '\r')) view.remove_suffix(1);
    auto key = crypto::from_hex(view);
    if (!key || key->size() != 32)
        return error{errc::secret_store_failure, key_file + " must hold 64 hex digits (a 256-bit key)"};
    return fingerprinter(std::move(*key));
}

std::string fingerprinter::fingerprint(secret_bytes const& secret) const {
    auto mac = crypto::hmac_sha256(key_, secret.data(), secret.size());
    return "hmac-sha256:" + crypto::to_hex(mac.data(), mac.size());
}

}  // namespace integration::credentials
