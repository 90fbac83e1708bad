#include <integration/services/api_key_service.hpp>

#include "storage/fixtures.hpp"

#include <integration/backends/sqlite/sqlite_store.hpp>

#include <fstream>
#include <iterator>

namespace integration::testing {
namespace {

TEST(api_key_service, keys_are_random_found_by_their_owner_and_stored_hashed) {
    temp_dir dir;
    std::string a, admin;
    {
        auto store = must(storage::open_sqlite_store({.path = dir.file("i.db")}));
        keys::api_key_service keys(*store);
        a = must(keys.create("tenant-a", false));
        admin = must(keys.create("ops", true));
        EXPECT_EQ(a.rfind("ik_", 0), 0u);
        EXPECT_EQ(a.size(), 3u + 43u);
        EXPECT_NE(a, admin);
        EXPECT_EQ(keys.create("bad tenant!", false).error(), errc::invalid_argument);
    }
    for (auto const& f : {dir.file("i.db"), dir.file("i.db-wal")}) {
        std::ifstream in(f, std::ios::binary);
        std::string bytes{std::istreambuf_iterator<char>(in), {}};
        EXPECT_EQ(bytes.find(a.substr(3)), std::string::npos) << f;
    }
    auto store = must(storage::open_sqlite_store({.path = dir.file("i.db")}));
    keys::api_key_service keys(*store);
    auto owner = must(keys.find(a));
    ASSERT_TRUE(owner);
    EXPECT_EQ(owner->tenant_id, "tenant-a");
    EXPECT_FALSE(owner->admin);
    EXPECT_EQ(owner->key_hash.size(), 64u);
    EXPECT_EQ(owner->key_hash.find(a.substr(3)), std::string::npos);
    EXPECT_TRUE(must(keys.find(admin))->admin);
    EXPECT_FALSE(must(keys.find(a + "x")));
    EXPECT_FALSE(must(keys.find("not-a-key")));
    EXPECT_FALSE(must(keys.find("")));
}

}  // namespace
}  // namespace integration::testing
