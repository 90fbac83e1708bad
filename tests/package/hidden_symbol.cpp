// Calls a function of src/detail (SHA-256 in src/detail/crypto.hpp), which the library uses
// but does not export: linking this against the shared libraries must fail (shared_test.sh).
#include <iostream>
#include <string>
#include <string_view>

namespace integration::crypto {
std::string sha256_hex(std::string_view data);
}

int main() { std::cout << integration::crypto::sha256_hex("abc") << "\n"; }
