#include "crypto.hpp"
#include "sync_folder.hpp"

#include <integration/core/id.hpp>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>

namespace integration::crypto {
namespace {

struct ctx_deleter {
    void operator()(EVP_CIPHER_CTX* c) const noexcept { EVP_CIPHER_CTX_free(c); }
};
using cipher_ctx = std::unique_ptr<EVP_CIPHER_CTX, ctx_deleter>;
struct md_ctx_deleter {
    void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
};
using md_ctx = std::unique_ptr<EVP_MD_CTX, md_ctx_deleter>;

}  // namespace

secret_bytes random_key() {
    auto k = secret_bytes::zeroed(key_size);
    random_bytes(k.data(), k.size());
    return k;
}

std::vector<unsigned char> seal(secret_bytes const& key, unsigned char const* pt, std::size_t n, std::string_view aad) {
    std::vector<unsigned char> out(nonce_size + n + tag_size);
    random_bytes(out.data(), nonce_size);
    cipher_ctx c(EVP_CIPHER_CTX_new());
    int len = 0;
    if (!c || key.size() != key_size || EVP_EncryptInit_ex(c.get(), EVP_aes_256_gcm(), nullptr, key.data(), out.data()) != 1 ||
        EVP_EncryptUpdate(c.get(), nullptr, &len, reinterpret_cast<unsigned char const*>(aad.data()),
                          static_cast<int>(aad.size())) != 1 ||
        EVP_EncryptUpdate(c.get(), out.data() + nonce_size, &len, pt, static_cast<int>(n)) != 1 ||
        EVP_EncryptFinal_ex(c.get(), out.data() + nonce_size + len, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_GET_TAG, tag_size, out.data() + nonce_size + n) != 1)
        throw std::runtime_error("AES-256-GCM encryption failed in OpenSSL");
    return out;
}

result<secret_bytes> open(secret_bytes const& key, std::vector<unsigned char> const& sealed, std::string_view aad) {
    if (sealed.size() < nonce_size + tag_size || key.size() != key_size)
        return error{errc::integrity_failure, "sealed record is truncated"};
    std::size_t n = sealed.size() - nonce_size - tag_size;
    auto out = secret_bytes::zeroed(n);
    cipher_ctx c(EVP_CIPHER_CTX_new());
    int len = 0;
    bool ok = c && EVP_DecryptInit_ex(c.get(), EVP_aes_256_gcm(), nullptr, key.data(), sealed.data()) == 1 &&
              EVP_DecryptUpdate(c.get(), nullptr, &len, reinterpret_cast<unsigned char const*>(aad.data()),
                                static_cast<int>(aad.size())) == 1 &&
              EVP_DecryptUpdate(c.get(), out.data(), &len, sealed.data() + nonce_size, static_cast<int>(n)) == 1 &&
              EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_SET_TAG, tag_size,
                                  const_cast<unsigned char*>(sealed.data() + nonce_size + n)) == 1 &&
              EVP_DecryptFinal_ex(c.get(), out.data() + len, &len) == 1;
    if (!ok)
        return error{errc::integrity_failure,
                     "sealed record failed authentication: wrong master key, or the record was altered or moved"};
    return out;
}

std::vector<unsigned char> hmac_sha256(secret_bytes const& key, unsigned char const* data, std::size_t n) {
    return hmac(digest::sha256, key.view(), {{reinterpret_cast<char const*>(data), n}});
}

namespace {

// HMAC contexts per thread and digest, each keeping its key: keying a context (two digest blocks
// and OpenSSL's parameter handling) costs more than the MAC of a 1 KiB body, and a server checks
// the same few secrets (a connection's, two during a rotation) again and again. A context that
// already holds the key is only restarted. The keys stay in this thread's memory until another
// key takes their slot, as verification secrets stay cached in memory anyway.
struct keyed_context {
    EVP_MAC_CTX* ctx = nullptr;
    secret_bytes key;
    bool keyed = false;
    std::uint64_t used = 0;
};

struct hmac_contexts {
    static constexpr std::size_t slots = 4;
    std::array<keyed_context, slots> sha1, sha256;
    std::uint64_t clock = 0;

    hmac_contexts() {
        static EVP_MAC* const mac = EVP_MAC_fetch(nullptr, OSSL_MAC_NAME_HMAC, nullptr);
        for (auto* set : {&sha1, &sha256}) {
            char const* name = set == &sha1 ? "SHA1" : "SHA256";
            OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>(name), 0),
                                   OSSL_PARAM_construct_end()};
            for (auto& slot : *set) {
                slot.ctx = mac ? EVP_MAC_CTX_new(mac) : nullptr;
                if (slot.ctx && EVP_MAC_CTX_set_params(slot.ctx, params) != 1) {
                    EVP_MAC_CTX_free(slot.ctx);
                    slot.ctx = nullptr;
                }
            }
        }
    }
    ~hmac_contexts() {
        for (auto* set : {&sha1, &sha256})
            for (auto& slot : *set) EVP_MAC_CTX_free(slot.ctx);
    }
    hmac_contexts(hmac_contexts const&) = delete;
    hmac_contexts& operator=(hmac_contexts const&) = delete;

    /** A context of digest `d` ready to MAC with `key`, or null when OpenSSL failed. */
    EVP_MAC_CTX* ready(digest d, std::string_view key) {
        auto& set = d == digest::sha1 ? sha1 : sha256;
        ++clock;
        keyed_context* oldest = &set[0];
        for (auto& slot : set) {
            if (slot.keyed && slot.key.view() == key) {
                slot.used = clock;
                return slot.ctx && EVP_MAC_init(slot.ctx, nullptr, 0, nullptr) == 1 ? slot.ctx : nullptr;
            }
            if (slot.used < oldest->used) oldest = &slot;
        }
        // An empty key is a valid HMAC key; OpenSSL wants a non-null pointer for it.
        static unsigned char const no_key = 0;
        auto const* k = key.empty() ? &no_key : reinterpret_cast<unsigned char const*>(key.data());
        oldest->keyed = false;
        oldest->key = secret_bytes(key);
        oldest->used = clock;
        if (!oldest->ctx || EVP_MAC_init(oldest->ctx, k, key.size(), nullptr) != 1) return nullptr;
        oldest->keyed = true;
        return oldest->ctx;
    }
};

}  // namespace

std::vector<unsigned char> hmac(digest d, std::string_view key, std::span<std::string_view const> parts) {
    thread_local hmac_contexts contexts;
    std::vector<unsigned char> out(d == digest::sha1 ? 20 : 32);
    auto* const c = contexts.ready(d, key);
    bool ok = c != nullptr;
    for (auto part : parts)
        ok = ok && EVP_MAC_update(c, reinterpret_cast<unsigned char const*>(part.data()), part.size()) == 1;
    std::size_t n = 0;
    ok = ok && EVP_MAC_final(c, out.data(), &n, out.size()) == 1 && n == out.size();
    if (!ok) throw std::runtime_error("HMAC failed in OpenSSL");
    return out;
}

std::vector<unsigned char> hmac(digest d, std::string_view key, std::initializer_list<std::string_view> parts) {
    return hmac(d, key, std::span<std::string_view const>(parts.begin(), parts.size()));
}

namespace {
// Fetched once: SHA256() and EVP_sha256() look the implementation up again on every digest, a
// third of the cost of hashing an API key on each request.
EVP_MD const* sha256_md() {
    static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return md;
}
}  // namespace

std::string sha256_hex(std::string_view data) { return sha256_hex({data}); }

std::string sha256_hex(std::initializer_list<std::string_view> parts) {
    return sha256_hex(std::span<std::string_view const>(parts.begin(), parts.size()));
}

std::string sha256_hex(std::span<std::string_view const> parts) {
    md_ctx c(EVP_MD_CTX_new());
    unsigned char d[SHA256_DIGEST_LENGTH];
    unsigned n = 0;
    bool ok = c && sha256_md() && EVP_DigestInit_ex(c.get(), sha256_md(), nullptr) == 1;
    for (auto part : parts) ok = ok && EVP_DigestUpdate(c.get(), part.data(), part.size()) == 1;
    if (!ok || EVP_DigestFinal_ex(c.get(), d, &n) != 1) throw std::runtime_error("SHA-256 failed in OpenSSL");
    return to_hex(d, n);
}

std::string to_hex(unsigned char const* data, std::size_t n) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s;
    s.reserve(n * 2);
    for (std::size_t i = 0; i < n; ++i) {
        s += digits[data[i] >> 4];
        s += digits[data[i] & 15];
    }
    return s;
}

result<secret_bytes> from_hex(std::string_view hex) {
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    if (hex.size() % 2) return error{errc::invalid_argument, "hex text has an odd number of digits"};
    auto out = secret_bytes::zeroed(hex.size() / 2);
    for (std::size_t i = 0; i < out.size(); ++i) {
        int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return error{errc::invalid_argument, "hex text has a non-hex digit"};
        out.data()[i] = static_cast<unsigned char>(hi << 4 | lo);
    }
    return out;
}

namespace {

std::string encode_base64(unsigned char const* data, std::size_t n, char const* table, bool pad) {
    std::string out;
    out.reserve((n + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = data[i] << 16 | data[i + 1] << 8 | data[i + 2];
        out += table[v >> 18 & 63];
        out += table[v >> 12 & 63];
        out += table[v >> 6 & 63];
        out += table[v & 63];
    }
    if (n - i == 1) {
        unsigned v = data[i] << 16;
        out += table[v >> 18 & 63];
        out += table[v >> 12 & 63];
        if (pad) out += "==";
    } else if (n - i == 2) {
        unsigned v = data[i] << 16 | data[i + 1] << 8;
        out += table[v >> 18 & 63];
        out += table[v >> 12 & 63];
        out += table[v >> 6 & 63];
        if (pad) out += '=';
    }
    return out;
}

struct pkey_deleter {
    void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};
using pkey = std::unique_ptr<EVP_PKEY, pkey_deleter>;

pkey ed25519_private(secret_bytes const& seed) {
    pkey k(seed.size() == ed25519_seed_size
               ? EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data(), seed.size())
               : nullptr);
    if (!k) throw std::runtime_error("an Ed25519 private key needs a 32-byte seed");
    return k;
}

}  // namespace

std::string base64url(unsigned char const* data, std::size_t n) {
    return encode_base64(data, n, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", false);
}

std::string base64(unsigned char const* data, std::size_t n) {
    return encode_base64(data, n, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", true);
}

result<secret_bytes> from_base64(std::string_view text) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    if (text.size() % 4)
        return error{errc::invalid_argument, "base64 text must be a multiple of 4 characters long (padded with '=')"};
    std::size_t pad = text.ends_with("==") ? 2 : text.ends_with('=') ? 1 : 0;
    auto out = secret_bytes::zeroed(text.size() / 4 * 3 - pad);
    std::size_t o = 0;
    for (std::size_t i = 0; i < text.size(); i += 4) {
        unsigned v = 0;
        for (std::size_t j = 0; j < 4; ++j) {
            bool const padding = i + j >= text.size() - pad;
            int d = padding ? 0 : value(text[i + j]);
            if (d < 0) return error{errc::invalid_argument, "base64 text has a character outside A-Z a-z 0-9 + /"};
            v = v << 6 | static_cast<unsigned>(d);
        }
        for (std::size_t j = 0; j < 3 && o < out.size(); ++j) out.data()[o++] = static_cast<unsigned char>(v >> (16 - 8 * j));
    }
    return out;
}

bool canonical_base64(std::string_view text) noexcept {
    std::size_t const pad = text.ends_with("==") ? 2 : text.ends_with('=') ? 1 : 0;
    if (pad == 0 || text.size() <= pad) return true;
    auto const c = text[text.size() - 1 - pad];
    int const v = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26 : c >= '0' && c <= '9' ? c - '0' + 52
                                                                                       : c == '+' ? 62 : 63;
    return (v & (pad == 1 ? 0x3 : 0xf)) == 0;
}

bool equal_constant_time(std::string_view a, std::string_view b) noexcept {
    // Unequal lengths still cost one full comparison, of `a` with itself, so that the time says
    // nothing about the contents.
    bool const same_size = a.size() == b.size();
    auto const* other = same_size ? b.data() : a.data();
    return (CRYPTO_memcmp(a.data(), other, a.size()) == 0) & same_size;
}

std::vector<unsigned char> ed25519_public_key(secret_bytes const& seed) {
    auto k = ed25519_private(seed);
    std::vector<unsigned char> out(ed25519_public_key_size);
    std::size_t n = out.size();
    if (EVP_PKEY_get_raw_public_key(k.get(), out.data(), &n) != 1 || n != out.size())
        throw std::runtime_error("OpenSSL could not derive an Ed25519 public key");
    return out;
}

std::vector<unsigned char> ed25519_sign(secret_bytes const& seed, std::string_view message) {
    auto k = ed25519_private(seed);
    md_ctx c(EVP_MD_CTX_new());
    std::vector<unsigned char> sig(ed25519_signature_size);
    std::size_t n = sig.size();
    if (!c || EVP_DigestSignInit(c.get(), nullptr, nullptr, nullptr, k.get()) != 1 ||
        EVP_DigestSign(c.get(), sig.data(), &n, reinterpret_cast<unsigned char const*>(message.data()),
                       message.size()) != 1)
        throw std::runtime_error("Ed25519 signing failed in OpenSSL");
    return sig;
}

bool ed25519_verify(unsigned char const* public_key, std::size_t public_key_size, std::string_view message,
                    unsigned char const* signature, std::size_t signature_size) {
    if (public_key_size != ed25519_public_key_size || signature_size != ed25519_signature_size) return false;
    pkey k(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, public_key, public_key_size));
    md_ctx c(EVP_MD_CTX_new());
    return k && c && EVP_DigestVerifyInit(c.get(), nullptr, nullptr, nullptr, k.get()) == 1 &&
           EVP_DigestVerify(c.get(), signature, signature_size, reinterpret_cast<unsigned char const*>(message.data()),
                            message.size()) == 1;
}

void wipe(std::string& s) noexcept {
    if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
    s.clear();
}

namespace {

/** Writes `content` to `path`, a private file made here (never one that is there already: a
 *  link planted in a shared folder would have the key written elsewhere), and syncs it;
 *  `already_exists` when `path` is there. */
result<void> write_new_file(std::string const& path, std::string_view content) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST) return error{errc::already_exists, path + " was created by another process"};
        return error{errc::secret_store_failure, "cannot create " + path + ": " + std::strerror(errno)};
    }
    ::fchmod(fd, 0600);
    bool ok = ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) {
        ::unlink(path.c_str());
        return error{errc::secret_store_failure, "cannot write " + path + ": " + std::strerror(errno)};
    }
    return {};
}

/** `write_new_file` of `tmp`, a leftover of an earlier write removed first. */
result<void> write_temp_file(std::string const& tmp, std::string_view content) {
    if (::unlink(tmp.c_str()) != 0 && errno != ENOENT)
        return error{errc::secret_store_failure, "cannot replace " + tmp + ": " + std::strerror(errno)};
    return write_new_file(tmp, content);
}

// The new name is durable too: a power loss must not keep the secrets sealed under a key and
// lose the key file.
result<void> sync_folder_of(std::string const& path) {
    auto slash = path.find_last_of('/');
    auto dir = slash == std::string::npos ? std::string(".") : slash == 0 ? std::string("/") : path.substr(0, slash);
    if (!detail::sync_folder(dir.c_str())) return error{errc::secret_store_failure, "cannot sync the folder of " + path + ": " + std::strerror(errno)};
    return {};
}

}  // namespace

result<void> write_private_file(std::string const& path, std::string_view content) {
    std::string tmp = path + ".tmp";
    if (auto w = write_temp_file(tmp, content); !w) return w;
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        auto e = errno;
        ::unlink(tmp.c_str());
        return error{errc::secret_store_failure, "cannot write " + path + ": " + std::strerror(e)};
    }
    return sync_folder_of(path);
}

result<void> create_private_file(std::string const& path, std::string_view content) {
    // A temp name of this call's own (racing creators would remove or rename each other's), and
    // link(), which unlike rename() never replaces a file another creator put there first.
    auto tag = random_key();
    std::string tmp = path + ".tmp-" + to_hex(tag.data(), 8);
    if (auto w = write_temp_file(tmp, content); !w) return w;
    int linked = ::link(tmp.c_str(), path.c_str());
    auto e = errno;
    ::unlink(tmp.c_str());
    if (linked != 0 && (e == EPERM || e == EOPNOTSUPP || e == ENOSYS)) {
        // A filesystem without hard links (vfat, some FUSE and SMB mounts): the file is made
        // exclusively in place; a creator racing this one reads it once it is whole.
        if (auto w = write_new_file(path, content); !w) return w;
        return sync_folder_of(path);
    }
    if (linked != 0) {
        if (e == EEXIST) return error{errc::already_exists, path + " was created by another process"};
        return error{errc::secret_store_failure, "cannot create " + path + ": " + std::strerror(e)};
    }
    return sync_folder_of(path);
}

result<secret_bytes> read_private_file(std::string const& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    // Only a file that is not there is not_found (callers may create it); one that is there but
    // cannot be opened must never be taken for missing and replaced.
    if (fd < 0)
        return error{errno == ENOENT ? errc::not_found : errc::secret_store_failure,
                     "cannot open " + path + ": " + std::strerror(errno)};
    struct stat st {};
    ::fstat(fd, &st);
    if (st.st_mode & 077) {
        ::close(fd);
        return error{errc::secret_store_failure,
                     path + " is readable by group or others; run chmod 600 " + path + " and retry"};
    }
    auto out = secret_bytes::zeroed(static_cast<std::size_t>(st.st_size));
    auto n = ::read(fd, out.data(), out.size());
    ::close(fd);
    if (n != static_cast<ssize_t>(out.size())) return error{errc::secret_store_failure, "cannot read " + path};
    return out;
}

}  // namespace integration::crypto
