#include <integration/backends/sqlite/sqlite_blob_store.hpp>
#include <integration/backends/filesystem/filesystem_blob_store.hpp>
#include <integration/ports/blob_store.hpp>

#include "platform/tiered_blob_store.hpp"
#include "storage/fixtures.hpp"
#include "support/fsync_recorder.hpp"
#include "support/sqlite_file.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>
#include <functional>
#include <set>

// The same cases over every blob-store backend.

namespace integration::testing {
namespace {

using namespace std::chrono_literals;

struct blob_backend {
    std::string name;
    /** Opens the backend in `dir`; `clock` dates the SQLite backend's writes. */
    std::function<std::unique_ptr<blobs::blob_store>(std::string const& dir, manual_clock& clock)> open;
    /** Makes the blob `key` of `tenant` look `age` old. */
    std::function<void(std::string const& dir, manual_clock& clock, std::string const& tenant, std::string const& key,
                       std::chrono::hours age)>
        age;
};

std::vector<blob_backend> backends() {
    return {
        {"filesystem",
         [](std::string const& dir, manual_clock&) { return must(blobs::open_filesystem_blob_store(dir + "/blobs")); },
         [](std::string const& dir, manual_clock&, std::string const& tenant, std::string const& key, std::chrono::hours age) {
             auto path = dir + "/blobs/" + tenant + "/" + key;
             std::filesystem::last_write_time(path, std::filesystem::file_time_type::clock::now() - age);
         }},
        {"sqlite",
         [](std::string const& dir, manual_clock& clock) {
             return must(blobs::open_sqlite_blob_store({.path = dir + "/blobs.db", .clock = &clock}));
         },
         nullptr},
    };
}

class blob_store_conformance : public ::testing::TestWithParam<blob_backend> {
protected:
    temp_dir dir;
    manual_clock clock{system_clock::instance().now()};
    std::unique_ptr<blobs::blob_store> open() { return GetParam().open(dir.path().string(), clock); }
};

TEST_P(blob_store_conformance, round_trips_bytes_under_a_tenant_partitioned_reference) {
    auto blobs = open();
    std::string body("binary\0body\r\n", 13);
    auto ref = must(blobs->put("t1", "runs/run-1/request", body));
    EXPECT_EQ(ref, "blob://t1/runs/run-1/request");
    EXPECT_EQ(must(blobs->get("t1", ref)), body);
    must(blobs->put("t1", "runs/run-1/request", "replaced"));
    EXPECT_EQ(must(blobs->get("t1", ref)), "replaced");
    must(blobs->remove("t1", ref));
    EXPECT_EQ(blobs->get("t1", ref).error(), errc::not_found);
    must(blobs->remove("t1", ref));  // idempotent
}

TEST_P(blob_store_conformance, another_tenant_cannot_read_or_delete_by_reference) {
    auto blobs = open();
    auto ref = must(blobs->put("tenant-a", "payload", "secret-ish"));
    EXPECT_EQ(blobs->get("tenant-b", ref).error(), errc::not_found);
    EXPECT_EQ(blobs->remove("tenant-b", ref).error(), errc::not_found);
    must(blobs->put("tenant-b", "payload", "b's own"));  // same key, other tenant: a different blob
    EXPECT_EQ(must(blobs->get("tenant-a", ref)), "secret-ish");
}

TEST_P(blob_store_conformance, keys_cannot_escape_the_tenant_partition) {
    auto blobs = open();
    for (auto key : {"../other/x", "a/../../x", "/abs", "a//b", "a/./b", "", "sp ace", "a/"})
        EXPECT_EQ(blobs->put("t1", key, "x").error(), errc::invalid_argument) << key;
    EXPECT_EQ(blobs->get("t1", "blob://t1/../t2/x").error(), errc::invalid_argument);
    EXPECT_EQ(blobs->put("../t2", "x", "x").error(), errc::invalid_argument);
    // Tenants "." and ".." would be the store's own folder and its parent.
    for (auto tenant : {".", ".."}) {
        EXPECT_EQ(blobs->put(tenant, "runs/r1/response", "x").error(), errc::invalid_argument) << tenant;
        EXPECT_EQ(blobs->get(tenant, std::string("blob://") + tenant + "/t1/x").error(), errc::invalid_argument) << tenant;
    }
}

// A key and the same key with a suffix are two blobs; writing one never replaces the other.
TEST_P(blob_store_conformance, a_key_and_a_longer_key_beginning_with_it_are_two_blobs) {
    auto blobs = open();
    for (auto suffix : {".tmp", "-tmp", ".1"}) {
        auto twin = std::string("runs/r1/x") + suffix;
        must(blobs->put("t1", twin, "twin"));
        must(blobs->put("t1", "runs/r1/x", "one"));
        must(blobs->put("t1", "runs/r1/x", "two"));
        EXPECT_EQ(must(blobs->get("t1", blobs::reference("t1", twin))), "twin") << suffix;
    }
}

// A segment is a file name in a backend of files: a longer one would fail there as an outage
// (ENAMETOOLONG) while another backend took it. Every backend refuses it as a bad key.
TEST_P(blob_store_conformance, a_key_segment_over_200_characters_is_a_bad_key) {
    auto blobs = open();
    must(blobs->put("t1", "runs/" + std::string(200, 'a'), "x"));
    auto refused = blobs->put("t1", "runs/" + std::string(201, 'a'), "x");
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error(), errc::invalid_argument) << refused.error().detail();
    EXPECT_NE(refused.error().detail().find("at most 200 characters"), std::string::npos) << refused.error().detail();
}

TEST_P(blob_store_conformance, purge_removes_only_blobs_older_than_the_cutoff) {
    auto blobs = open();
    auto const& backend = GetParam();
    if (!backend.age) clock.advance(-31 * 24h);  // the SQLite backend dates writes by the clock
    auto old_ref = must(blobs->put("t1", "old", "o"));
    if (backend.age) backend.age(dir.path().string(), clock, "t1", "old", 31 * 24h);
    else clock.advance(31 * 24h);
    auto new_ref = must(blobs->put("t2", "new", "n"));
    EXPECT_EQ(must(blobs->purge_older_than(system_clock::instance().now() - 30 * 24h)), 1u);
    EXPECT_EQ(blobs->get("t1", old_ref).error(), errc::not_found);
    EXPECT_EQ(must(blobs->get("t2", new_ref)), "n");
}

TEST_P(blob_store_conformance, purge_with_a_prefix_keeps_other_old_blobs) {
    auto blobs = open();
    auto const& backend = GetParam();
    if (!backend.age) clock.advance(-31 * 24h);
    auto body = must(blobs->put("t1", "runs/r1/response", "b"));
    auto archive = must(blobs->put("t1", "archive/runs/a.jsonl", "a"));
    if (backend.age) {
        backend.age(dir.path().string(), clock, "t1", "runs/r1/response", 31 * 24h);
        backend.age(dir.path().string(), clock, "t1", "archive/runs/a.jsonl", 31 * 24h);
    } else {
        clock.advance(31 * 24h);
    }
    EXPECT_EQ(must(blobs->purge_older_than(system_clock::instance().now() - 30 * 24h, "runs/")), 1u);
    EXPECT_EQ(blobs->get("t1", body).error(), errc::not_found);
    EXPECT_EQ(must(blobs->get("t1", archive)), "a");
}

TEST_P(blob_store_conformance, put_many_writes_every_blob_or_refuses_a_bad_key) {
    auto blobs = open();
    auto refs = must(blobs->put_many({{"t1", "runs/a/response", "A"}, {"t2", "runs/b/response", "B"}}, durability::deferred));
    ASSERT_EQ(refs.size(), 2u);
    EXPECT_EQ(refs[0], blobs::reference("t1", "runs/a/response"));
    EXPECT_EQ(must(blobs->get("t1", refs[0])), "A");
    EXPECT_EQ(must(blobs->get("t2", refs[1])), "B");
    EXPECT_EQ(blobs->get("t1", refs[1]).error(), errc::not_found);  // still partitioned by tenant
    EXPECT_EQ(blobs->put_many({{"t1", "../escape", "x"}}).error(), errc::invalid_argument);
    EXPECT_EQ(must(blobs->put_many({})).size(), 0u);
}

TEST_P(blob_store_conformance, deferred_puts_are_readable_at_once_and_survive_the_process_being_killed) {
    std::string ref;
    {
        auto blobs = open();
        ref = must(blobs->put("t1", "runs/r1/response", "deferred body", durability::deferred));
        EXPECT_EQ(must(blobs->get("t1", ref)), "deferred body");
    }
    // A child writes deferred blobs and is killed before any flush interval could pass.
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        auto blobs = GetParam().open(dir.path().string(), clock);
        for (int i = 0; i < 50; ++i)
            if (!blobs->put("t1", "runs/k" + std::to_string(i) + "/response", "body " + std::to_string(i), durability::deferred))
                ::_exit(2);
        ::_exit(0);  // no destructors, no flush
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    auto blobs = open();
    EXPECT_EQ(must(blobs->get("t1", ref)), "deferred body");
    for (int i = 0; i < 50; ++i)
        EXPECT_EQ(must(blobs->get("t1", "blob://t1/runs/k" + std::to_string(i) + "/response")), "body " + std::to_string(i));
}

// "Not found" means gone for good to a reader (the delivery worker ends a delivery whose payload
// is not found): a blob the process cannot open now (no descriptor left, a link loop, I/O) is an
// outage instead.
TEST(filesystem_blob_store, a_blob_that_cannot_be_opened_now_is_unavailable_not_missing) {
    temp_dir dir;
    auto store = must(blobs::open_filesystem_blob_store(dir.file("blobs")));
    auto ref = must(store->put("t1", "webhooks/events/e1", "{}"));
    EXPECT_EQ(store->get("t1", "webhooks/events/none").error(), errc::not_found);
    // Its file replaced by a link to itself: the open fails (ELOOP), and the blob is not gone.
    std::filesystem::path file;
    for (auto const& e : std::filesystem::recursive_directory_iterator(dir.file("blobs")))
        if (e.is_regular_file() && e.path().filename() == "e1") file = e.path();
    ASSERT_FALSE(file.empty());
    auto kept = file.string() + ".kept";
    std::filesystem::rename(file, kept);
    std::filesystem::create_symlink(file.filename(), file);
    auto got = store->get("t1", ref);
    ASSERT_FALSE(got);
    EXPECT_EQ(got.error(), errc::unavailable) << got.error().detail();
    std::filesystem::remove(file);
    std::filesystem::rename(kept, file);
    EXPECT_EQ(must(store->get("t1", ref)), "{}");
    // A folder is no blob (its read fails with EISDIR; a stream threw there).
    auto folder = ref.substr(0, ref.rfind('/'));
    auto read = store->get("t1", folder);
    ASSERT_FALSE(read);
    EXPECT_EQ(read.error(), errc::not_found) << read.error().detail();
}

// A durable put is durable by name as well: the new file's entry in its folder, and each folder
// it created in its parent, are synced before the put returns (a power loss could otherwise keep
// the commit that refers to the blob and lose the blob).
TEST(filesystem_blob_store, a_durable_put_syncs_the_names_it_created) {
    temp_dir dir;
    auto const root = std::filesystem::canonical(dir.path()) / "blobs";
    auto blobs = must(blobs::open_filesystem_blob_store(root.string()));
    auto const& record = fsynced_during;
    auto first = record([&] { must(blobs->put("t1", "runs/r1/response", "body")); });
    for (auto const& folder : {root, root / "t1", root / "t1" / "runs", root / "t1" / "runs" / "r1"})
        EXPECT_TRUE(first.contains(folder.string())) << folder << " was not synced";
    auto second = record([&] { must(blobs->put("t1", "runs/r1/request", "body")); });
    EXPECT_TRUE(second.contains((root / "t1" / "runs" / "r1").string()));
    EXPECT_FALSE(second.contains((root / "t1" / "runs").string())) << "no folder was created";
    auto deferred = record([&] { must(blobs->put("t1", "runs/r2/response", "body", durability::deferred)); });
    EXPECT_TRUE(deferred.empty()) << "a deferred put waits for the store's flush";
}

// Keys such as `runs/<id>/response` make a folder per run: retention that removed only files
// left one empty folder (an inode) behind per run or delivery, forever.
TEST(filesystem_blob_store, removing_or_purging_the_last_blob_of_a_folder_removes_the_empty_folders) {
    temp_dir dir;
    auto const root = std::filesystem::canonical(dir.path()) / "blobs";
    auto blobs = must(blobs::open_filesystem_blob_store(root.string()));
    auto r1 = must(blobs->put("t1", "runs/r1/response", "a"));
    auto r1_request = must(blobs->put("t1", "runs/r1/request", "b"));
    must(blobs->put("t1", "runs/r2/response", "c"));
    must(blobs->put("t1", "webhooks/inbound/del-1/payload", "d"));
    must(blobs->remove("t1", r1));
    EXPECT_TRUE(std::filesystem::exists(root / "t1" / "runs" / "r1")) << "its other blob is still there";
    must(blobs->remove("t1", r1_request));
    EXPECT_FALSE(std::filesystem::exists(root / "t1" / "runs" / "r1"));
    EXPECT_TRUE(std::filesystem::exists(root / "t1" / "runs" / "r2" / "response"));

    for (auto const& key : {"runs/r2/response", "webhooks/inbound/del-1/payload"})
        std::filesystem::last_write_time(root / "t1" / key, std::filesystem::file_time_type::clock::now() - 48h);
    EXPECT_EQ(must(blobs->purge_older_than(system_clock::instance().now() - 24h)), 2u);
    EXPECT_FALSE(std::filesystem::exists(root / "t1" / "runs"));
    EXPECT_FALSE(std::filesystem::exists(root / "t1" / "webhooks"));
    EXPECT_TRUE(std::filesystem::exists(root / "t1")) << "the tenant's folder stays";
    // A folder removed is made again by the next put under it.
    auto again = must(blobs->put("t1", "runs/r1/response", "e"));
    EXPECT_EQ(must(blobs->get("t1", again)), "e");
}

// `put` creates a folder and then its file; `remove` takes a folder away once it is empty. Run
// together on keys that share folders, no put fails and every blob put is there.
TEST(filesystem_blob_store, puts_and_removes_of_neighbouring_blobs_race_without_a_failed_put) {
    temp_dir dir;
    auto blobs = must(blobs::open_filesystem_blob_store((dir.path() / "blobs").string()));
    std::atomic<bool> stop{false};
    std::thread remover([&] {
        for (int i = 0; !stop; ++i) {
            auto key = "runs/r" + std::to_string(i % 2) + "/response";
            if (auto ref = blobs->put("t1", key, "x", durability::deferred)) (void)blobs->remove("t1", *ref);
        }
    });
    std::string failed;
    for (int i = 0; i < 5000 && failed.empty(); ++i) {
        auto key = "runs/r" + std::to_string(i % 2) + "/request";
        auto ref = blobs->put("t1", key, "y", durability::deferred);
        if (!ref) failed = ref.error().detail();
        else if (auto gone = blobs->remove("t1", *ref); !gone) failed = gone.error().detail();
    }
    stop = true;
    remover.join();
    EXPECT_EQ(failed, "");
}

// Two puts of one key at once (two threads here; two relays of one event in the library) each
// write a file of their own: a reader sees one content or the other, whole, and neither put fails.
TEST(filesystem_blob_store, concurrent_puts_of_one_key_never_mix_their_contents) {
    temp_dir dir;
    auto blobs = must(blobs::open_filesystem_blob_store(dir.file("blobs")));
    std::string const a(64 * 1024, 'A'), b(16, 'B');
    auto ref = must(blobs->put("t1", "webhooks/events/e1/payload.json", a, durability::deferred));
    std::atomic<bool> stop{false};
    std::string failed;
    std::thread other([&] {
        while (!stop)
            if (auto r = blobs->put("t1", "webhooks/events/e1/payload.json", b, durability::deferred); !r) {
                failed = r.error().detail();
                return;
            }
    });
    std::string seen;
    for (int i = 0; i < 2000 && seen.empty() && failed.empty(); ++i) {
        if (auto r = blobs->put("t1", "webhooks/events/e1/payload.json", a, durability::deferred); !r) failed = r.error().detail();
        auto got = blobs->get("t1", ref);
        if (got && *got != a && *got != b) seen = got->substr(0, 40) + "... (" + std::to_string(got->size()) + " bytes)";
    }
    stop = true;
    other.join();
    EXPECT_EQ(failed, "") << "a put failed";
    EXPECT_EQ(seen, "") << "a read saw a mix of two puts";
}

// Two stores of one process on one root (two platforms, say) putting one key at once: their
// temporary files never share a name, and no put fails.
TEST(filesystem_blob_store, two_stores_on_one_root_put_one_key_at_once_without_a_failed_put) {
    temp_dir dir;
    auto first = must(blobs::open_filesystem_blob_store(dir.file("blobs")));
    auto second = must(blobs::open_filesystem_blob_store(dir.file("blobs")));
    std::atomic<bool> stop{false};
    std::string failed;
    std::thread other([&] {
        while (!stop)
            if (auto r = second->put("t1", "runs/r1/response", "second", durability::deferred); !r) {
                failed = r.error().detail();
                return;
            }
    });
    for (int i = 0; i < 2000 && failed.empty(); ++i)
        if (auto r = first->put("t1", "runs/r1/response", "first", durability::deferred); !r) failed = r.error().detail();
    stop = true;
    other.join();
    EXPECT_EQ(failed, "");
}

// A put that crashed leaves its temporary file; a purge takes such a file once it is older than
// the cutoff, under any key (an archive's included), without counting it as a blob.
TEST(filesystem_blob_store, a_purge_takes_old_temporary_files_a_crash_left_under_any_key) {
    temp_dir dir;
    auto const root = std::filesystem::path(dir.file("blobs"));
    auto blobs = must(blobs::open_filesystem_blob_store(root.string()));
    must(blobs->put("t1", "archive/runs-1.jsonl", "kept"));
    auto const left = root / "t1" / "archive" / "runs-1.jsonl~4242.7tmp";
    std::ofstream(left) << "half";
    auto const fresh = root / "t1" / "archive" / "runs-2.jsonl~4242.8tmp";
    std::ofstream(fresh) << "being written";
    std::filesystem::last_write_time(left, std::filesystem::file_time_type::clock::now() - std::chrono::hours(48));
    EXPECT_EQ(must(blobs->purge_older_than(system_clock::instance().now() - std::chrono::hours(24), "runs/")), 0u);
    EXPECT_FALSE(std::filesystem::exists(left));
    EXPECT_TRUE(std::filesystem::exists(fresh)) << "a put's temporary file younger than the cutoff was taken";
    EXPECT_EQ(must(blobs->get("t1", "blob://t1/archive/runs-1.jsonl")), "kept");
}

// The 200-character limit of a segment is for new keys: a blob stored under a longer one before
// it is still read and removed.
TEST(sqlite_blob_store, a_blob_stored_under_a_segment_over_200_characters_is_still_read_and_removed) {
    temp_dir dir;
    manual_clock clock{system_clock::instance().now()};
    auto blobs = must(blobs::open_sqlite_blob_store({.path = dir.file("blobs.db"), .clock = &clock}));
    auto const key = "runs/" + std::string(250, 'a');
    exec_sql(dir.file("blobs.db"), "INSERT INTO blobs (tenant_id, key, written_at, data) VALUES ('t1', '" + key + "', 0, 'old')");
    EXPECT_EQ(must(blobs->get("t1", blobs::reference("t1", key))), "old");
    must(blobs->remove("t1", blobs::reference("t1", key)));
    EXPECT_EQ(blobs->get("t1", blobs::reference("t1", key)).error(), errc::not_found);
}

// Retention's purge walks the folders while blobs come and go: a file removed between the walk
// reading its folder and the purge looking at its age is skipped, not an exception.
TEST(filesystem_blob_store, a_purge_racing_removals_neither_throws_nor_fails) {
    temp_dir dir;
    auto blobs = must(blobs::open_filesystem_blob_store(dir.file("blobs")));
    std::atomic<bool> stop{false};
    std::thread churn([&] {
        for (int i = 0; !stop; ++i) {
            auto key = "runs/r" + std::to_string(i % 64) + "/response";
            if (auto ref = blobs->put("t1", key, "x", durability::deferred)) (void)blobs->remove("t1", *ref);
        }
    });
    std::string failed;
    for (int i = 0; i < 3000 && failed.empty(); ++i) {
        try {
            if (auto r = blobs->purge_older_than(time_point{}, "runs/"); !r) failed = r.error().detail();
        } catch (std::exception const& e) {
            failed = std::string("threw: ") + e.what();
        }
    }
    stop = true;
    churn.join();
    EXPECT_EQ(failed, "");
}

// A blob is a file here, so `a` and `a/b` cannot both be blobs: the second is refused as a bad
// key (an outage would be retried for ever), and the first is kept.
TEST(filesystem_blob_store, a_key_that_is_another_blobs_folder_or_below_a_blob_is_a_bad_key) {
    temp_dir dir;
    auto blobs = must(blobs::open_filesystem_blob_store(dir.file("blobs")));
    auto folder = must(blobs->put("t1", "a/b", "below"));
    auto over = blobs->put("t1", "a", "over");
    ASSERT_FALSE(over);
    EXPECT_EQ(over.error(), errc::invalid_argument) << over.error().detail();
    auto file = must(blobs->put("t1", "c", "file"));
    for (auto key : {"c/d", "c/d/e"}) {
        auto under = blobs->put("t1", key, "under");
        ASSERT_FALSE(under) << key;
        EXPECT_EQ(under.error(), errc::invalid_argument) << key << ": " << under.error().detail();
    }
    EXPECT_EQ(must(blobs->get("t1", folder)), "below");
    EXPECT_EQ(must(blobs->get("t1", file)), "file");
}

/** A real blob store whose removals fail while `failing` is set. */
class failing_removals final : public blobs::blob_store {
public:
    explicit failing_removals(std::unique_ptr<blobs::blob_store> inner) : inner_(std::move(inner)) {}
    std::atomic<bool> failing{false};
    result<std::string> put(std::string const& t, std::string const& key, std::string_view data, durability d) override {
        return inner_->put(t, key, data, d);
    }
    result<std::string> get(std::string const& t, std::string const& ref) override { return inner_->get(t, ref); }
    result<void> remove(std::string const& t, std::string const& ref) override {
        if (failing) return error{errc::unavailable, "disk I/O error"};
        return inner_->remove(t, ref);
    }
    result<std::size_t> purge_older_than(time_point cutoff, std::string_view prefix) override {
        return inner_->purge_older_than(cutoff, prefix);
    }

private:
    std::unique_ptr<blobs::blob_store> inner_;
};

// The embedded default keeps small blobs in SQLite and large ones in files, and reads the small
// tier first. A blob replaced by one of the other size must not be read under its old content:
// when the old copy cannot be removed, the put is undone and refused, and the old content stays.
TEST(tiered_blob_store, a_replacement_of_the_other_size_whose_old_copy_stays_is_refused_not_half_done) {
    temp_dir dir;
    manual_clock clock{system_clock::instance().now()};
    auto small_owned = std::make_unique<failing_removals>(must(blobs::open_sqlite_blob_store({.path = dir.file("blobs.db"), .clock = &clock})));
    auto& small = *small_owned;
    auto tiered = detail::make_tiered_blob_store(std::move(small_owned),
                                                 must(blobs::open_filesystem_blob_store(dir.file("blobs"))), 16);
    auto ref = must(tiered->put("t1", "runs/r1/response", "short"));
    std::string const large(64, 'L');
    small.failing = true;
    auto replaced = tiered->put("t1", "runs/r1/response", large);
    ASSERT_FALSE(replaced) << "a put whose old copy stays was reported done";
    EXPECT_EQ(replaced.error(), errc::unavailable);
    EXPECT_NE(replaced.error().detail().find("was not replaced"), std::string::npos) << replaced.error().detail();
    EXPECT_EQ(must(tiered->get("t1", ref)), "short");
    small.failing = false;
    EXPECT_EQ(must(tiered->put("t1", "runs/r1/response", large)), ref);
    EXPECT_EQ(must(tiered->get("t1", ref)), large);
}

// A replacement in the tier that held the blob overwrites the only copy: when the other tier
// cannot be cleared (an outage there, holding no copy), the new content is what stays, never
// nothing. A small blob replacing a large one is read first, so a large copy left behind does
// not make the put fail.
TEST(tiered_blob_store, a_replacement_whose_other_tier_cannot_be_cleared_keeps_the_new_content) {
    temp_dir dir;
    manual_clock clock{system_clock::instance().now()};
    auto small_owned = std::make_unique<failing_removals>(must(blobs::open_sqlite_blob_store({.path = dir.file("blobs.db"), .clock = &clock})));
    auto large_owned = std::make_unique<failing_removals>(must(blobs::open_filesystem_blob_store(dir.file("blobs"))));
    auto &small = *small_owned, &large = *large_owned;
    auto tiered = detail::make_tiered_blob_store(std::move(small_owned), std::move(large_owned), 16);
    std::string const first(64, '1'), second(64, '2');
    auto ref = must(tiered->put("t1", "runs/r1/response", first));
    small.failing = true;
    auto replaced = tiered->put("t1", "runs/r1/response", second);
    EXPECT_TRUE(replaced) << replaced.error().detail();
    auto read = tiered->get("t1", ref);
    ASSERT_TRUE(read) << "the replacement removed the only copy: " << read.error().detail();
    EXPECT_EQ(*read, second);
    small.failing = false;
    large.failing = true;
    EXPECT_EQ(must(tiered->put("t1", "runs/r1/response", "short")), ref);
    EXPECT_EQ(must(tiered->get("t1", ref)), "short");
}

INSTANTIATE_TEST_SUITE_P(backends, blob_store_conformance, ::testing::ValuesIn(backends()),
                         [](auto const& info) { return info.param.name; });

}  // namespace
}  // namespace integration::testing
