#include <integration/core/id.hpp>
#include <integration/core/time.hpp>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include <stdexcept>

namespace integration {
namespace {

constexpr char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

bool is_crockford(char c) noexcept {
    for (char k : std::string_view(crockford))
        if (k == c) return true;
    return false;
}

}  // namespace

void random_bytes(unsigned char* out, std::size_t n) {
    if (RAND_bytes(out, static_cast<int>(n)) != 1) throw std::runtime_error("the OpenSSL CSPRNG failed");
}

namespace {
// Counts forks: a pool filled before the current count belongs to a parent. A counter bumped by a
// pthread_atfork handler costs nothing per id, where comparing getpid() cost a system call.
std::atomic<unsigned> forks{0};
unsigned fork_generation() {
    static bool const registered = [] {
        ::pthread_atfork(nullptr, nullptr, [] { forks.fetch_add(1, std::memory_order_relaxed); });
        return true;
    }();
    (void)registered;
    return forks.load(std::memory_order_relaxed);
}
}  // namespace

void id_bytes(unsigned char* out, std::size_t n) {
    // One RAND_bytes per 512 bytes instead of one per id. A forked child must not reuse its
    // parent's bytes, so the pool belongs to a process.
    struct pool {
        unsigned char bytes[512];
        std::size_t used = sizeof bytes;
        unsigned generation = 0;
    };
    thread_local pool p;
    if (n > sizeof p.bytes) return random_bytes(out, n);
    auto generation = fork_generation();
    if (p.used + n > sizeof p.bytes || p.generation != generation) {
        random_bytes(p.bytes, sizeof p.bytes);
        p.used = 0;
        p.generation = generation;
    }
    std::memcpy(out, p.bytes + p.used, n);
    OPENSSL_cleanse(p.bytes + p.used, n);  // handed out once
    p.used += n;
}

namespace {

// `prefix-` and the ULID of millisecond `ms` with `random` as its 80 low bits (10 bytes).
std::string make_id(std::string_view prefix, std::uint64_t ms, unsigned char const* random) {
    // ULID: 48-bit big-endian millisecond time then 80 random bits, 26 base32 characters.
    unsigned char bytes[16];
    for (int i = 0; i < 6; ++i) bytes[i] = static_cast<unsigned char>(ms >> (8 * (5 - i)));
    std::memcpy(bytes + 6, random, 10);
    std::string out(prefix);
    out += '-';
    // 128 bits as 26 groups of 5 bits, the first group holding the top 3 bits.
    char text[26];
    for (int i = 0; i < 26; ++i) {
        // Character i holds bits [130 - 5(i+1), 130 - 5i) of the 130-bit zero-padded value.
        int hi = 130 - 5 * i - 1;  // most significant bit index of this group
        unsigned group = 0;
        for (int bit = hi; bit > hi - 5; --bit) {
            unsigned b = 0;
            if (bit < 128) b = (bytes[15 - bit / 8] >> (bit % 8)) & 1u;
            group = (group << 1) | b;
        }
        text[i] = crockford[group];
    }
    out.append(text, 26);
    return out;
}

}  // namespace

std::string new_id(std::string_view prefix, time_point now) {
    unsigned char random[10];
    id_bytes(random, sizeof random);
    return make_id(prefix, static_cast<std::uint64_t>(to_unix_ms(now)), random);
}

std::string first_id_at(std::string_view prefix, time_point at) {
    unsigned char const none[10] = {};
    return make_id(prefix, static_cast<std::uint64_t>(std::max<std::int64_t>(to_unix_ms(at), 0)), none);
}

bool is_valid_id(std::string_view id, std::string_view prefix) noexcept {
    if (id.size() != prefix.size() + 27 || id.substr(0, prefix.size()) != prefix || id[prefix.size()] != '-')
        return false;
    auto body = id.substr(prefix.size() + 1);
    if (body[0] > '7') return false;
    for (char c : body)
        if (!is_crockford(c)) return false;
    return true;
}

}  // namespace integration
