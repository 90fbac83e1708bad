// SHA-256 of src/detail/crypto.cpp against FIPS 180-2's test vectors: API keys are found by this
// digest of the key, so a changed digest would lock every stored key out.
#include "detail/crypto.hpp"

#include <gtest/gtest.h>

#include <string>

namespace integration::testing {
namespace {

TEST(crypto_digest, sha256_matches_the_fips_test_vectors_in_one_part_or_several) {
    EXPECT_EQ(crypto::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(crypto::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    std::string const two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    EXPECT_EQ(crypto::sha256_hex(two_blocks), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    EXPECT_EQ(crypto::sha256_hex({"abcdbcdecdefdefg", "", "efghfghighijhijkijkljklmklmnlmnomnopnopq"}),
              crypto::sha256_hex(two_blocks));
    EXPECT_EQ(crypto::sha256_hex(std::string(1'000'000, 'a')),
              "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

}  // namespace
}  // namespace integration::testing
