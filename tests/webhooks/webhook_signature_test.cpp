#include <integration/services/webhook_signature.hpp>

#include "storage/fixtures.hpp"
#include "support/base64.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace integration;
using namespace integration::webhooks;
using integration::testing::must;
namespace support = integration::testing;

// The Standard Webhooks vector of ../shared/reference/webhook-signatures.md.
secret_bytes const& vector_secret() {
    static secret_bytes const s("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    return s;
}
constexpr std::string_view vector_id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
constexpr std::int64_t vector_ts = 1614265330;
constexpr std::string_view vector_body = R"({"test": 2432232314})";
constexpr std::string_view vector_signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

std::string decoded(std::string_view b64) {
    // The test's own decoder, so that the library's is not checked against itself.
    static constexpr std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    unsigned v = 0;
    int bits = 0;
    for (char c : b64) {
        if (c == '=') break;
        v = v << 6 | static_cast<unsigned>(alphabet.find(c));
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>(v >> bits & 0xff);
        }
    }
    return out;
}

TEST(webhook_signature_test, signs_the_standard_webhooks_vector) {
    EXPECT_EQ(must(sign(vector_secret(), vector_id, vector_ts, vector_body)), vector_signature);
}

TEST(webhook_signature_test, verifies_the_vector_within_the_tolerance_both_ways) {
    auto at = [&](std::int64_t now) {
        return verify(vector_secret(), vector_id, std::to_string(vector_ts), vector_body, vector_signature, now);
    };
    EXPECT_TRUE(at(vector_ts));
    EXPECT_TRUE(at(vector_ts + 299));
    EXPECT_TRUE(at(vector_ts + 300));
    EXPECT_TRUE(at(vector_ts - 300));
    for (auto now : {vector_ts + 301, vector_ts - 301, vector_ts + 86'400, std::int64_t{0}}) {
        auto r = at(now);
        ASSERT_FALSE(r) << now;
        EXPECT_EQ(r.error(), errc::integrity_failure);
        EXPECT_NE(r.error().detail().find("300 s"), std::string::npos) << r.error().detail();
    }
    EXPECT_TRUE(verify(vector_secret(), vector_id, std::to_string(vector_ts), vector_body, vector_signature,
                       vector_ts + 1000, 1000));
    EXPECT_EQ(verify(vector_secret(), vector_id, std::to_string(vector_ts), vector_body, vector_signature, vector_ts, -1)
                  .error(),
              errc::invalid_argument);
}

TEST(webhook_signature_test, any_change_to_the_body_id_or_timestamp_fails) {
    auto check = [&](std::string_view id, std::string const& ts, std::string_view body) {
        return verify(vector_secret(), id, ts, body, vector_signature, vector_ts);
    };
    std::string const ts = std::to_string(vector_ts);
    for (std::string body : {std::string(R"({"test": 2432232315})"), std::string(R"({"test":2432232314})"),
                             std::string(vector_body) + "\n", "\xEF\xBB\xBF" + std::string(vector_body),
                             std::string(R"({"test": 2432232314})").replace(0, 1, "["), std::string()}) {
        auto r = check(vector_id, ts, body);
        ASSERT_FALSE(r) << body;
        EXPECT_EQ(r.error(), errc::integrity_failure);
    }
    EXPECT_FALSE(check("msg_p5jXN8AQM9LWM0D4loKWxJeK", ts, vector_body));
    EXPECT_FALSE(check(vector_id, std::to_string(vector_ts + 1), vector_body));
    EXPECT_FALSE(verify(secret_bytes("whsec_" + support::base64(std::string(24, 'k'))), vector_id, ts, vector_body,
                        vector_signature, vector_ts));
}

TEST(webhook_signature_test, malformed_headers_are_refused_without_a_crash) {
    std::string const ts = std::to_string(vector_ts);
    for (std::string header : std::vector<std::string>{"", " ", "v1", "v1,", "v1,!!!!", "v1,g0hM9SsE", "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                               "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                               "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=X",
                               "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE",
                               "v1, g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", std::string(10'000, 'v')}) {
        auto r = verify(vector_secret(), vector_id, ts, vector_body, header, vector_ts);
        ASSERT_FALSE(r) << header;
        EXPECT_EQ(r.error(), errc::integrity_failure) << header;
    }
    for (std::string bad_ts : {"", "abc", "1614265330abc", "16142653301614265330", "-1614265330", "+1614265330",
                               " 1614265330", "1614265330.0"}) {
        auto r = verify(vector_secret(), vector_id, bad_ts, vector_body, vector_signature, vector_ts);
        ASSERT_FALSE(r) << bad_ts;
        EXPECT_EQ(r.error(), errc::integrity_failure) << bad_ts;
    }
}

TEST(webhook_signature_test, unknown_versions_and_other_signatures_are_skipped) {
    std::string const ts = std::to_string(vector_ts);
    for (std::string header :
         {"v2,abc " + std::string(vector_signature), "v1,AAAA " + std::string(vector_signature) + " v1a,zzz",
          std::string(vector_signature) + "  v1,AAAA", "v1,wrong v1,alsowrong " + std::string(vector_signature)})
        EXPECT_TRUE(verify(vector_secret(), vector_id, ts, vector_body, header, vector_ts)) << header;
}

TEST(webhook_signature_test, secrets_of_the_wrong_form_are_refused_without_repeating_them) {
    std::vector<std::string> bad = {"whsec_" + support::base64(std::string(23, 'k')),
                                    "whsec_" + support::base64(std::string(65, 'k')),
                                    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",  // not a multiple of 4
                                    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa-w",  // base64url
                                    "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                    "whsk_" + support::base64(std::string(31, 'k')),
                                    "whpk_" + support::base64(std::string(32, 'k')),
                                    ""};
    for (auto const& s : bad) {
        auto r = sign(secret_bytes(s), vector_id, vector_ts, vector_body);
        ASSERT_FALSE(r) << s;
        EXPECT_EQ(r.error(), errc::invalid_argument);
        if (s.size() > 6) {
            EXPECT_EQ(r.error().message().find(s.substr(6)), std::string::npos) << r.error().message();
        }
    }
    EXPECT_TRUE(sign(secret_bytes("whsec_" + support::base64(std::string(24, 'k'))), vector_id, vector_ts, vector_body));
    EXPECT_TRUE(sign(secret_bytes("whsec_" + support::base64(std::string(64, 'k'))), vector_id, vector_ts, vector_body));
    EXPECT_EQ(verify(secret_bytes("whsk_" + support::base64(std::string(32, 'k'))), vector_id, "1", "", "v1,x", 1)
                  .error(),
              errc::invalid_argument);
}

TEST(webhook_signature_test, generated_secrets_are_whsec_with_32_random_bytes) {
    auto a = generate_signing_secret();
    auto b = generate_signing_secret();
    ASSERT_TRUE(a.view().starts_with("whsec_")) << "prefix";
    EXPECT_EQ(a.size(), 6u + 44u);
    EXPECT_EQ(decoded(a.view().substr(6)).size(), 32u);
    EXPECT_FALSE(a == b);
    auto sig = must(sign(a, "msg_1", 1700000000, "{}"));
    EXPECT_TRUE(verify(a, "msg_1", "1700000000", "{}", sig, 1700000000));
    EXPECT_FALSE(verify(b, "msg_1", "1700000000", "{}", sig, 1700000000));
}

TEST(webhook_signature_test, the_rotation_header_carries_each_secrets_signature) {
    auto current = generate_signing_secret();
    auto previous = vector_secret().clone();
    std::vector<secret_bytes> both;
    both.push_back(current.clone());
    both.push_back(previous.clone());
    auto header = must(signature_header(both, vector_id, vector_ts, vector_body));
    EXPECT_EQ(header, must(sign(current, vector_id, vector_ts, vector_body)) + " " + std::string(vector_signature));
    std::string const ts = std::to_string(vector_ts);
    EXPECT_TRUE(verify(current, vector_id, ts, vector_body, header, vector_ts));
    EXPECT_TRUE(verify(previous, vector_id, ts, vector_body, header, vector_ts));
    EXPECT_FALSE(verify(generate_signing_secret(), vector_id, ts, vector_body, header, vector_ts));
    EXPECT_EQ(signature_header({}, vector_id, vector_ts, vector_body).error(), errc::invalid_argument);
}

TEST(webhook_signature_test, ed25519_v1a_round_trip) {
    auto key = generate_ed25519_key();
    ASSERT_TRUE(key.private_key.view().starts_with("whsk_")) << "prefix";
    ASSERT_TRUE(key.public_key.starts_with("whpk_"));
    EXPECT_EQ(decoded(key.private_key.view().substr(5)).size(), 32u);
    EXPECT_EQ(decoded(std::string_view(key.public_key).substr(5)).size(), 32u);
    EXPECT_EQ(key.public_key.find(key.private_key.view().substr(5)), std::string::npos);

    auto sig = must(sign(key.private_key, vector_id, vector_ts, vector_body));
    ASSERT_TRUE(sig.starts_with("v1a,")) << sig;
    EXPECT_EQ(decoded(std::string_view(sig).substr(4)).size(), 64u);
    EXPECT_EQ(sig, must(sign(key.private_key, vector_id, vector_ts, vector_body)));  // Ed25519 is deterministic
    secret_bytes pub(key.public_key);
    std::string const ts = std::to_string(vector_ts);
    EXPECT_TRUE(verify(pub, vector_id, ts, vector_body, sig, vector_ts));
    EXPECT_TRUE(verify(pub, vector_id, ts, vector_body, std::string(vector_signature) + " " + sig, vector_ts));
    EXPECT_FALSE(verify(pub, vector_id, ts, R"({"test": 2432232315})", sig, vector_ts));
    EXPECT_FALSE(verify(secret_bytes(generate_ed25519_key().public_key), vector_id, ts, vector_body, sig, vector_ts));
    EXPECT_FALSE(verify(pub, vector_id, ts, vector_body, "v1a,AAAA", vector_ts));
    // A v1 secret does not accept a v1a entry, nor the reverse.
    EXPECT_FALSE(verify(vector_secret(), vector_id, ts, vector_body, sig, vector_ts));
    EXPECT_FALSE(verify(pub, vector_id, ts, vector_body, vector_signature, vector_ts));
}

// An unauthenticated request could fill the header with v1a entries, each an Ed25519
// verification; only the first 8 well-formed ones are verified (senders sign with a few keys).
TEST(webhook_signature_test, at_most_8_v1a_entries_are_verified) {
    auto key = generate_ed25519_key();
    auto other = generate_ed25519_key();
    secret_bytes pub(key.public_key);
    std::string const ts = std::to_string(vector_ts);
    auto sig = must(sign(key.private_key, vector_id, vector_ts, vector_body));
    auto wrong = must(sign(other.private_key, vector_id, vector_ts, vector_body));
    auto header = [&](int wrong_before) {
        std::string h;
        for (int i = 0; i < wrong_before; ++i) h += wrong + " ";
        return h + sig;
    };
    EXPECT_TRUE(verify(pub, vector_id, ts, vector_body, header(7), vector_ts));
    EXPECT_FALSE(verify(pub, vector_id, ts, vector_body, header(8), vector_ts));
    EXPECT_FALSE(verify(pub, vector_id, ts, vector_body, header(170), vector_ts));
    // Entries that are not v1a or not base64 are not verifications and do not count.
    EXPECT_TRUE(verify(pub, vector_id, ts, vector_body, "v1,AAAA v1a,!!! v2,x " + header(7), vector_ts));
}

TEST(webhook_signature_test, a_v1a_entry_is_read_as_written_not_only_as_decoded) {
    // Ed25519 checks decoded bytes; a spelling of them that no encoder writes (a bit set in the
    // four bits after the 64th byte) is refused, as a v1 entry compared as text is.
    auto key = generate_ed25519_key();
    secret_bytes pub(key.public_key);
    std::string const ts = std::to_string(vector_ts);
    auto sig = must(sign(key.private_key, vector_id, vector_ts, vector_body));
    ASSERT_TRUE(sig.ends_with("=="));
    ASSERT_TRUE(verify(pub, vector_id, ts, vector_body, sig, vector_ts));
    std::string_view const alphabet = support::b64_alphabet;
    auto& last = sig[sig.size() - 3];
    last = alphabet[alphabet.find(last) ^ 1];
    EXPECT_EQ(decoded(std::string_view(sig).substr(4)).size(), 64u);
    EXPECT_FALSE(verify(pub, vector_id, ts, vector_body, sig, vector_ts));
}

// ---- interop: the official receivers' libraries verify what this library signs ---------------

/** What tests/peers/verify_webhook.mjs said: 0 every verifier accepted, 1 every one refused. */
struct peer_verdict {
    int exit_code = -1;
    std::string output;
};

class webhook_signature_interop_test : public ::testing::Test {
protected:
    void SetUp() override {
        if (!std::filesystem::exists(std::string(INTEGRATION_PEERS_DIR) + "/node_modules/standardwebhooks") ||
            !std::filesystem::exists(std::string(INTEGRATION_PEERS_DIR) + "/node_modules/svix"))
            FAIL() << "the test peers are not installed: run npm ci in " << INTEGRATION_PEERS_DIR
                   << " (scripts/test.sh does)";
    }

    peer_verdict run_peer(boost::json::object const& message) {
        auto const in = dir_.file("in.json"), out = dir_.file("out.txt");
        std::ofstream(in) << boost::json::serialize(message);
        auto const command = "node " + std::string(INTEGRATION_PEERS_DIR) + "/verify_webhook.mjs < " + in + " > " + out;
        int const status = std::system(command.c_str());
        std::stringstream s;
        s << std::ifstream(out).rdbuf();
        return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, s.str()};
    }

    /** Signs `body` now with `signing` and asks the peer to verify with `secret`. */
    peer_verdict verify_with_peer(std::span<secret_bytes const> signing, std::string const& id, std::string_view body,
                                  std::string_view key_field, std::string_view key, std::string_view sent_body = {}) {
        auto const now = std::chrono::duration_cast<std::chrono::seconds>(
                             std::chrono::system_clock::now().time_since_epoch()).count();
        auto header = must(signature_header(signing, id, now, body));
        return run_peer({{"id", id}, {"timestamp", std::to_string(now)}, {"signature", header},
                         {"body", sent_body.empty() ? body : sent_body}, {key_field, key}});
    }

    support::temp_dir dir_;
};

std::string const interop_body = R"({"type":"order.paid","data":{"orderId":"o-1","note":"caf\u00e9 ☕","amount":12.5}})";

TEST_F(webhook_signature_interop_test, standardwebhooks_and_svix_verify_what_we_sign) {
    std::vector<secret_bytes> one;
    one.push_back(generate_signing_secret());
    auto v = verify_with_peer(one, "del-interop-1", interop_body, "secret", one[0].view());
    EXPECT_EQ(v.exit_code, 0) << v.output;
    EXPECT_NE(v.output.find(R"("standardwebhooks":true)"), std::string::npos) << v.output;
    EXPECT_NE(v.output.find(R"("svix":true)"), std::string::npos) << v.output;

    // The fixed vector's secret (24 bytes) as well as generated ones (32 bytes).
    std::vector<secret_bytes> vec;
    vec.push_back(vector_secret().clone());
    EXPECT_EQ(verify_with_peer(vec, "msg_p5jXN8AQM9LWM0D4loKWxJek", vector_body, "secret", vector_secret().view())
                  .exit_code,
              0);
}

TEST_F(webhook_signature_interop_test, a_one_byte_change_fails_in_both_libraries) {
    std::vector<secret_bytes> one;
    one.push_back(generate_signing_secret());
    auto changed = interop_body;
    changed[changed.find("12.5") + 3] = '6';
    auto v = verify_with_peer(one, "del-interop-2", interop_body, "secret", one[0].view(), changed);
    EXPECT_EQ(v.exit_code, 1) << v.output;
    EXPECT_NE(v.output.find(R"("standardwebhooks":false)"), std::string::npos) << v.output;
    EXPECT_NE(v.output.find(R"("svix":false)"), std::string::npos) << v.output;
    // Another secret fails too.
    EXPECT_EQ(verify_with_peer(one, "del-interop-2", interop_body, "secret", generate_signing_secret().view()).exit_code,
              1);
}

TEST_F(webhook_signature_interop_test, during_a_rotation_each_secret_alone_verifies_the_two_signature_header) {
    std::vector<secret_bytes> both;
    both.push_back(generate_signing_secret());  // the new one
    both.push_back(generate_signing_secret());  // the previous one, still in its overlap
    for (auto const& receiver_secret : both) {
        auto v = verify_with_peer(both, "del-interop-3", interop_body, "secret", receiver_secret.view());
        EXPECT_EQ(v.exit_code, 0) << v.output;
    }
    auto changed = interop_body + " ";
    EXPECT_EQ(verify_with_peer(both, "del-interop-3", interop_body, "secret", both[0].view(), changed).exit_code, 1);
}

TEST_F(webhook_signature_interop_test, nodes_ed25519_verifies_our_v1a_signatures) {
    auto key = generate_ed25519_key();
    std::vector<secret_bytes> signing;
    signing.push_back(generate_signing_secret());
    signing.push_back(key.private_key.clone());
    auto v = verify_with_peer(signing, "del-interop-4", interop_body, "publicKey", key.public_key);
    EXPECT_EQ(v.exit_code, 0) << v.output;
    auto changed = interop_body;
    changed.back() = ']';
    EXPECT_EQ(verify_with_peer(signing, "del-interop-4", interop_body, "publicKey", key.public_key, changed).exit_code,
              1);
}

}  // namespace
