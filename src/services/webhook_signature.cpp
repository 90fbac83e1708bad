#include <integration/services/webhook_signature.hpp>

#include <integration/core/id.hpp>

#include "../detail/crypto.hpp"

#include <algorithm>
#include <charconv>

namespace integration::webhooks {
namespace {

constexpr std::string_view symmetric_prefix = "whsec_";
constexpr std::string_view private_key_prefix = "whsk_";
constexpr std::string_view public_key_prefix = "whpk_";

// `prefix` + base64(bytes), built in secret memory.
secret_bytes prefixed_base64(std::string_view prefix, unsigned char const* bytes, std::size_t n) {
    auto encoded = crypto::base64(bytes, n);
    std::string text;
    text.reserve(prefix.size() + encoded.size());
    text.append(prefix).append(encoded);
    secret_bytes out(text);
    crypto::wipe(encoded);
    crypto::wipe(text);
    return out;
}

// The key bytes of a `prefix` secret, `size_min`-`size_max` bytes long. Errors never repeat it.
result<secret_bytes> decode_key(std::string_view secret, std::string_view prefix, std::size_t size_min,
                                std::size_t size_max) {
    auto key = crypto::from_base64(secret.substr(prefix.size()));
    if (!key)
        return error{errc::invalid_argument, "the " + std::string(prefix) + " signing key is not standard base64"};
    if (key->size() < size_min || key->size() > size_max)
        return error{errc::invalid_argument,
                     "the " + std::string(prefix) + " signing key must decode to " +
                         (size_min == size_max ? std::to_string(size_min)
                                               : std::to_string(size_min) + "-" + std::to_string(size_max)) +
                         " bytes"};
    return key;
}

std::string signed_content(std::string_view webhook_id, std::string_view timestamp, std::string_view body) {
    std::string content;
    content.reserve(webhook_id.size() + timestamp.size() + body.size() + 2);
    content.append(webhook_id).append(1, '.').append(timestamp).append(1, '.').append(body);
    return content;
}

// The MAC runs over the three parts in place: no copy of the body.
std::string v1(secret_bytes const& key, std::string_view webhook_id, std::string_view timestamp, std::string_view body) {
    auto mac = crypto::hmac(crypto::digest::sha256, key.view(), {webhook_id, ".", timestamp, ".", body});
    return "v1," + crypto::base64(mac.data(), mac.size());
}

}  // namespace

secret_bytes generate_signing_secret() {
    auto key = secret_bytes::zeroed(32);
    random_bytes(key.data(), key.size());
    return prefixed_base64(symmetric_prefix, key.data(), key.size());
}

ed25519_key_pair generate_ed25519_key() {
    auto seed = secret_bytes::zeroed(crypto::ed25519_seed_size);
    random_bytes(seed.data(), seed.size());
    auto pub = crypto::ed25519_public_key(seed);
    return {prefixed_base64(private_key_prefix, seed.data(), seed.size()),
            std::string(public_key_prefix) + crypto::base64(pub.data(), pub.size())};
}

result<secret_bytes> hmac_key(secret_bytes const& secret) {
    if (!secret.view().starts_with(symmetric_prefix))
        return error{errc::invalid_argument, "an HMAC signing secret starts with whsec_"};
    return decode_key(secret.view(), symmetric_prefix, 24, 64);
}

result<secret_bytes> verification_key(secret_bytes const& secret) {
    auto const s = secret.view();
    if (s.starts_with(public_key_prefix)) {
        auto key = decode_key(s, public_key_prefix, crypto::ed25519_public_key_size, crypto::ed25519_public_key_size);
        if (!key) return key.error();
        return secret.clone();
    }
    if (s.starts_with(symmetric_prefix)) {
        if (auto key = hmac_key(secret); !key) return key.error();
        return secret.clone();
    }
    auto prefixed = secret_bytes::zeroed(symmetric_prefix.size() + s.size());
    std::copy(symmetric_prefix.begin(), symmetric_prefix.end(), prefixed.data());
    std::copy(s.begin(), s.end(), prefixed.data() + symmetric_prefix.size());
    if (!hmac_key(prefixed))
        return error{errc::invalid_argument,
                     "a Standard Webhooks secret is whsec_ followed by the standard base64 of 24-64 bytes "
                     "(or that base64 alone), or a whpk_ Ed25519 public key"};
    return prefixed;
}

result<std::string> sign(secret_bytes const& secret, std::string_view webhook_id, std::int64_t timestamp,
                         std::string_view body) {
    auto const s = secret.view();
    if (s.starts_with(symmetric_prefix)) {
        auto key = hmac_key(secret);
        if (!key) return key.error();
        return v1(*key, webhook_id, std::to_string(timestamp), body);
    }
    if (s.starts_with(private_key_prefix)) {
        auto seed = decode_key(s, private_key_prefix, crypto::ed25519_seed_size, crypto::ed25519_seed_size);
        if (!seed) return seed.error();
        auto sig = crypto::ed25519_sign(*seed, signed_content(webhook_id, std::to_string(timestamp), body));
        return "v1a," + crypto::base64(sig.data(), sig.size());
    }
    return error{errc::invalid_argument,
                 "a webhook signing secret must start with whsec_ (HMAC, v1) or whsk_ (Ed25519, v1a)"};
}

result<std::string> signature_header(std::span<secret_bytes const> secrets, std::string_view webhook_id,
                                     std::int64_t timestamp, std::string_view body) {
    if (secrets.empty()) return error{errc::invalid_argument, "a webhook-signature header needs at least one secret"};
    std::string header;
    for (auto const& secret : secrets) {
        auto sig = sign(secret, webhook_id, timestamp, body);
        if (!sig) return sig.error();
        if (!header.empty()) header += ' ';
        header += *sig;
    }
    return header;
}

result<void> verify(secret_bytes const& secret, std::string_view webhook_id, std::string_view timestamp,
                    std::string_view body, std::string_view signature_header, std::int64_t now_unix,
                    std::int64_t tolerance_s) {
    if (tolerance_s < 0) return error{errc::invalid_argument, "the timestamp tolerance must not be negative"};
    std::int64_t ts = 0;
    auto const* end = timestamp.data() + timestamp.size();
    auto [ptr, ec] = std::from_chars(timestamp.data(), end, ts);
    if (timestamp.empty() || timestamp.front() == '-' || ec != std::errc{} || ptr != end)
        return error{errc::integrity_failure, "webhook-timestamp is not a unix time in seconds"};
    // Both ways: a timestamp from the future is as suspect as an old one (a replay prepared ahead).
    if (ts < now_unix - tolerance_s || ts > now_unix + tolerance_s)
        return error{errc::integrity_failure, "webhook-timestamp is more than " + std::to_string(tolerance_s) +
                                                  " s away from now; the message is refused as a possible replay"};

    auto const s = secret.view();
    auto const ts_text = std::to_string(ts);  // as the vendors' libraries sign it: no leading zeros
    bool const symmetric = s.starts_with(symmetric_prefix);
    std::string expected;                   // v1: the whole "v1,<base64>" entry
    std::string content;                    // v1a: Ed25519 needs the message in one piece
    std::vector<unsigned char> public_key;  // v1a
    if (symmetric) {
        auto key = hmac_key(secret);
        if (!key) return key.error();
        expected = v1(*key, webhook_id, ts_text, body);
    } else if (s.starts_with(public_key_prefix)) {
        auto key = decode_key(s, public_key_prefix, crypto::ed25519_public_key_size, crypto::ed25519_public_key_size);
        if (!key) return key.error();
        public_key.assign(key->data(), key->data() + key->size());
        content = signed_content(webhook_id, ts_text, body);
    } else {
        return error{errc::invalid_argument,
                     "verify needs a whsec_ secret (v1) or a whpk_ public key (v1a)"};
    }

    bool matched = false;
    // A sender signs with the keys it rotates through, a few at most; an unauthenticated header
    // full of `v1a,` entries must not buy one Ed25519 verification each (about 20 us apiece).
    constexpr int most_verified = 8;
    int verified = 0;
    while (!signature_header.empty()) {
        auto const space = signature_header.find(' ');
        auto const entry = signature_header.substr(0, space);
        signature_header.remove_prefix(space == std::string_view::npos ? signature_header.size() : space + 1);
        // Every entry is looked at, so the time does not say which one matched.
        if (symmetric) {
            matched |= crypto::equal_constant_time(entry, expected);
        } else if (entry.starts_with("v1a,") && verified < most_verified) {
            // Read as written, like the v1 entries compared as text: one spelling per signature.
            auto const text = entry.substr(4);
            if (auto sig = crypto::from_base64(text); sig && crypto::canonical_base64(text)) {
                ++verified;
                matched |= crypto::ed25519_verify(public_key.data(), public_key.size(), content, sig->data(), sig->size());
            }
        }
    }
    if (!matched)
        return error{errc::integrity_failure, "no signature in webhook-signature matches the message and the secret"};
    return {};
}

}  // namespace integration::webhooks
