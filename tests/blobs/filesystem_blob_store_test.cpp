#include <integration/blobs/blob_store.hpp>

#include "storage/fixtures.hpp"

#include <filesystem>

namespace integration::testing {
namespace {

using namespace std::chrono_literals;

TEST(filesystem_blob_store, round_trips_bytes_under_a_tenant_partitioned_reference) {
    temp_dir dir;
    auto blobs = must(blobs::open_filesystem_blob_store(dir.file("blobs")));
    std::string body("binary\0body\r\n", 13);
    auto ref = must(blobs->put("t1", "runs/run-1/request", body));
    EXPECT_EQ(ref, "blob://t1/runs/run-1/request");
    EXPECT_EQ(must(blobs->get("t1", ref)), body);
    EXPECT_TRUE(std::filesystem::exists(dir.file("blobs") + "/t1/runs/run-1/request"));
    must(blobs->put("t1", "runs/run-1/request", "replaced"));
    EXPECT_EQ(must(blobs->get("t1", ref)), "replaced");
    must(blobs->remove("t1", ref));
    EXPECT_EQ(blobs->get("t1", ref).error(), errc::not_found);
    must(blobs->remove("t1", ref));  // idempotent
}

TEST(filesystem_blob_store, another_tenant_cannot_read_or_delete_by_reference) {
    temp_dir dir;
    auto blobs = must(blobs::open_filesystem_blob_store(dir.file("blobs")));
    auto ref = must(blobs->put("tenant-a", "payload", "secret-ish"));
    EXPECT_EQ(blobs->get("tenant-b", ref).error(), errc::not_found);
    EXPECT_EQ(blobs->remove("tenant-b", ref).error(), errc::not_found);
    EXPECT_EQ(must(blobs->get("tenant-a", ref)), "secret-ish");
}

TEST(filesystem_blob_store, keys_cannot_escape_the_tenant_folder) {
    temp_dir dir;
    auto blobs = must(blobs::open_filesystem_blob_store(dir.file("blobs")));
    for (auto key : {"../other/x", "a/../../x", "/abs", "a//b", "a/./b", "", "sp ace", "a/"})
        EXPECT_EQ(blobs->put("t1", key, "x").error(), errc::invalid_argument) << key;
    EXPECT_EQ(blobs->get("t1", "blob://t1/../t2/x").error(), errc::invalid_argument);
    EXPECT_EQ(blobs->put("../t2", "x", "x").error(), errc::invalid_argument);
}

TEST(filesystem_blob_store, purge_removes_only_blobs_older_than_the_cutoff) {
    temp_dir dir;
    auto blobs = must(blobs::open_filesystem_blob_store(dir.file("blobs")));
    auto old_ref = must(blobs->put("t1", "old", "o"));
    auto new_ref = must(blobs->put("t2", "new", "n"));
    auto now = std::filesystem::file_time_type::clock::now();
    std::filesystem::last_write_time(dir.file("blobs") + "/t1/old", now - 31 * 24h);
    EXPECT_EQ(must(blobs->purge_older_than(system_clock::instance().now() - 30 * 24h)), 1u);
    EXPECT_EQ(blobs->get("t1", old_ref).error(), errc::not_found);
    EXPECT_EQ(must(blobs->get("t2", new_ref)), "n");
}

}  // namespace
}  // namespace integration::testing
