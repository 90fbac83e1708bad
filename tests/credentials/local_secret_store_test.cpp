#include <integration/backends/local_vault/local_secret_store.hpp>

#include "storage/fixtures.hpp"
#include "support/sqlite_file.hpp"

#include <integration/services/fingerprint.hpp>

#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

namespace integration::testing {
namespace {

using credentials::secret_ref;

class local_secret_store_test : public ::testing::Test {
protected:
    credentials::local_secret_store_options options() {
        return {.path = dir_.file("secrets.db"), .key_file = dir_.file("master.key"), .key_env = "", .clock = &clock_};
    }
    std::unique_ptr<credentials::local_secret_store> open() { return must(credentials::open_local_secret_store(options())); }

    void raw_sql(std::string const& sql) { exec_sql(dir_.file("secrets.db"), sql); }

    /** Flips one bit of the stored ciphertext of the first record. */
    void flip_sealed_byte(int index) {
        sqlite3* db = nullptr;
        ASSERT_EQ(sqlite3_open(dir_.file("secrets.db").c_str(), &db), SQLITE_OK);
        sqlite3_stmt* st = nullptr;
        sqlite3_prepare_v2(db, "SELECT sealed FROM secret_versions LIMIT 1", -1, &st, nullptr);
        ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
        auto const* p = static_cast<unsigned char const*>(sqlite3_column_blob(st, 0));
        std::vector<unsigned char> blob(p, p + sqlite3_column_bytes(st, 0));
        sqlite3_finalize(st);
        blob.at(static_cast<std::size_t>(index)) ^= 1;
        sqlite3_prepare_v2(db, "UPDATE secret_versions SET sealed = ?", -1, &st, nullptr);
        sqlite3_bind_blob(st, 1, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
        EXPECT_EQ(sqlite3_step(st), SQLITE_DONE);
        sqlite3_finalize(st);
        sqlite3_close(db);
    }

    temp_dir dir_;
    manual_clock clock_;
};

std::string slurp(std::string const& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

TEST_F(local_secret_store_test, versions_are_kept_and_read_back_by_ref) {
    auto vault = open();
    auto v1 = must(vault->put("t1", "api-key", secret_bytes("first-value")));
    auto v2 = must(vault->put("t1", "api-key", secret_bytes("second-value")));
    EXPECT_EQ(v1.version, 1);
    EXPECT_EQ(v2.version, 2);
    EXPECT_EQ(v2.uri(), "vault://local/t1/api-key?version=2");
    EXPECT_EQ(must(vault->get("t1", v1)).view(), "first-value");
    EXPECT_EQ(must(vault->get("t1", v2)).view(), "second-value");
    EXPECT_EQ(must(vault->get("t1", {"local", "t1", "api-key", 0})).view(), "second-value");
    auto versions = must(vault->versions("t1", "api-key"));
    ASSERT_EQ(versions.size(), 2u);
    EXPECT_TRUE(versions[0].enabled);
    EXPECT_EQ(must(secret_ref::parse(v2.uri())), v2);
}

TEST_F(local_secret_store_test, refs_are_parsed_strictly) {
    EXPECT_FALSE(secret_ref::parse("https://local/t1/x"));
    EXPECT_FALSE(secret_ref::parse("vault://local/t1"));
    EXPECT_FALSE(secret_ref::parse("vault://local/t1/a/b"));
    EXPECT_FALSE(secret_ref::parse("vault://local/t1/x?version=-1"));
    EXPECT_FALSE(secret_ref::parse("vault://local/t1/x?v=1"));
    EXPECT_FALSE(secret_ref::parse("vault://local/t1/bad name"));
    EXPECT_EQ(must(secret_ref::parse("vault://local/t1/x")).version, 0);
}

TEST_F(local_secret_store_test, tenants_are_namespaces) {
    auto vault = open();
    auto ref = must(vault->put("t1", "shared-name", secret_bytes("t1-secret")));
    must(vault->put("t2", "shared-name", secret_bytes("t2-secret")));
    auto cross = vault->get("t2", ref);  // t1's ref presented by t2
    ASSERT_FALSE(cross);
    EXPECT_EQ(cross.error(), errc::not_found);
    auto forged = ref;
    forged.tenant = "t2";
    EXPECT_EQ(must(vault->get("t2", forged)).view(), "t2-secret");
    EXPECT_EQ(must(vault->get("t1", ref)).view(), "t1-secret");
}

TEST_F(local_secret_store_test, disabled_versions_cannot_be_read_and_latest_skips_them) {
    auto vault = open();
    auto v1 = must(vault->put("t1", "k", secret_bytes("one")));
    auto v2 = must(vault->put("t1", "k", secret_bytes("two")));
    must(vault->disable("t1", v2));
    auto r = vault->get("t1", v2);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::invalid_state);
    EXPECT_EQ(must(vault->get("t1", {"local", "t1", "k", 0})).view(), "one");
    EXPECT_FALSE(must(vault->versions("t1", "k"))[1].enabled);
    (void)v1;
}

TEST_F(local_secret_store_test, soft_delete_recover_and_purge_with_protection) {
    auto vault = open();
    auto ref = must(vault->put("t1", "k", secret_bytes("value")));
    must(vault->soft_delete("t1", "k"));
    EXPECT_EQ(vault->get("t1", ref).error(), errc::not_found);
    EXPECT_EQ(vault->put("t1", "k", secret_bytes("x")).error(), errc::invalid_state);
    must(vault->recover("t1", "k"));
    EXPECT_EQ(must(vault->get("t1", ref)).view(), "value");
    must(vault->soft_delete("t1", "k"));
    auto early = vault->purge("t1", "k");
    ASSERT_FALSE(early);
    EXPECT_EQ(early.error(), errc::forbidden);
    clock_.advance(std::chrono::hours(24 * 90 + 1));
    must(vault->purge("t1", "k"));
    EXPECT_EQ(vault->recover("t1", "k").error(), errc::not_found);
    EXPECT_EQ(vault->versions("t1", "k").error(), errc::not_found);
}

// Soft-deleted secrets are destroyed once their recovery window ends, in every tenant, and no
// sooner; a secret in use is never touched, nor one recovered and deleted again later.
TEST_F(local_secret_store_test, purge_expired_destroys_only_secrets_deleted_longer_ago_than_the_window) {
    auto vault = open();
    auto in_use = must(vault->put("t1", "in-use", secret_bytes("kept")));
    must(vault->put("t1", "old", secret_bytes("gone")));
    must(vault->put("t2", "old", secret_bytes("gone too")));
    must(vault->put("t1", "again", secret_bytes("deleted twice")));
    must(vault->soft_delete("t1", "old"));
    must(vault->soft_delete("t2", "old"));
    must(vault->soft_delete("t1", "again"));
    clock_.advance(std::chrono::hours(24 * 30));
    must(vault->recover("t1", "again"));
    must(vault->soft_delete("t1", "again"));  // its window starts over
    clock_.advance(std::chrono::hours(24 * 60) - std::chrono::minutes(1));
    EXPECT_EQ(must(vault->purge_expired()), 0u);
    EXPECT_EQ(must(vault->versions("t1", "old")).size(), 1u) << "purged inside its recovery window";
    clock_.advance(std::chrono::minutes(1));
    EXPECT_EQ(must(vault->purge_expired()), 2u);
    EXPECT_EQ(vault->versions("t1", "old").error(), errc::not_found);
    EXPECT_EQ(vault->versions("t2", "old").error(), errc::not_found);
    EXPECT_EQ(vault->recover("t1", "old").error(), errc::not_found);
    EXPECT_EQ(must(vault->versions("t1", "again")).size(), 1u);
    EXPECT_EQ(must(vault->get("t1", in_use)).view(), "kept");
    clock_.advance(std::chrono::hours(24 * 30));
    EXPECT_EQ(must(vault->purge_expired()), 1u);
    EXPECT_EQ(must(vault->get("t1", in_use)).view(), "kept");
}

// A disabled version (rotated out, never verified) is destroyed once the window has passed since
// it was made; enabled ones stay, and so does a secret's newest, whose number a later put would
// otherwise give to other bytes.
TEST_F(local_secret_store_test, purge_expired_destroys_disabled_versions_made_before_the_window) {
    auto vault = open();
    auto v1 = must(vault->put("t1", "k", secret_bytes("one")));
    auto v2 = must(vault->put("t1", "k", secret_bytes("two")));
    auto v3 = must(vault->put("t1", "k", secret_bytes("three")));
    must(vault->disable("t1", v1));
    must(vault->disable("t1", v3));  // the newest, disabled
    clock_.advance(std::chrono::hours(24 * 90) - std::chrono::minutes(1));
    EXPECT_EQ(must(vault->purge_expired()), 0u);
    EXPECT_EQ(must(vault->versions("t1", "k")).size(), 3u);
    clock_.advance(std::chrono::minutes(1));
    EXPECT_EQ(must(vault->purge_expired()), 1u);
    auto left = must(vault->versions("t1", "k"));
    ASSERT_EQ(left.size(), 2u);
    EXPECT_EQ(left[0].version, v2.version);
    EXPECT_EQ(left[1].version, v3.version);
    EXPECT_EQ(vault->get("t1", v1).error(), errc::not_found);
    EXPECT_EQ(must(vault->get("t1", v2)).view(), "two");
    EXPECT_EQ(must(vault->put("t1", "k", secret_bytes("four"))).version, v3.version + 1);
}

TEST_F(local_secret_store_test, purge_without_protection_is_immediate_but_needs_a_soft_delete) {
    auto o = options();
    o.purge_protection = false;
    auto vault = must(credentials::open_local_secret_store(o));
    must(vault->put("t1", "k", secret_bytes("value")));
    EXPECT_EQ(vault->purge("t1", "k").error(), errc::invalid_state);
    must(vault->soft_delete("t1", "k"));
    must(vault->purge("t1", "k"));
}

// A purge destroys the sealed value for good: with the database file and the master key, an
// attacker must not find it in the file's free pages or in the WAL.
TEST_F(local_secret_store_test, a_purged_secret_leaves_no_sealed_bytes_in_the_files) {
    auto o = options();
    o.purge_protection = false;
    auto vault = must(credentials::open_local_secret_store(o));
    must(vault->put("t1", "k", secret_bytes(std::string(600, 'v'))));
    must(vault->put("t1", "k", secret_bytes(std::string(600, 'w'))));  // a second version
    std::vector<std::string> sealed;
    {
        sqlite3* db = nullptr;
        ASSERT_EQ(sqlite3_open(dir_.file("secrets.db").c_str(), &db), SQLITE_OK);
        sqlite3_stmt* st = nullptr;
        sqlite3_prepare_v2(db, "SELECT sealed FROM secret_versions", -1, &st, nullptr);
        while (sqlite3_step(st) == SQLITE_ROW)
            sealed.emplace_back(static_cast<char const*>(sqlite3_column_blob(st, 0)), static_cast<std::size_t>(sqlite3_column_bytes(st, 0)));
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
    ASSERT_EQ(sealed.size(), 2u);
    auto files = [&] { return slurp(dir_.file("secrets.db")) + slurp(dir_.file("secrets.db-wal")); };
    ASSERT_NE(files().find(sealed[0]), std::string::npos) << "the test reads the files wrong";
    must(vault->soft_delete("t1", "k"));
    must(vault->purge("t1", "k"));
    auto after = files();
    for (auto const& bytes : sealed) EXPECT_EQ(after.find(bytes), std::string::npos) << "a purged secret's ciphertext is still in the files";
}

TEST_F(local_secret_store_test, the_key_file_is_private_and_separate_from_the_data) {
    auto vault = open();
    must(vault->put("t1", "k", secret_bytes("canary-7f3a9c")));
    struct stat st {};
    ASSERT_EQ(::stat(dir_.file("master.key").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    auto key_hex = slurp(dir_.file("master.key"));
    auto hex = key_hex.substr(key_hex.find(' ') + 1, 64);
    auto db = slurp(dir_.file("secrets.db")) + slurp(dir_.file("secrets.db-wal"));
    EXPECT_EQ(db.find(hex), std::string::npos);
    EXPECT_EQ(db.find("canary-7f3a9c"), std::string::npos);
}

TEST_F(local_secret_store_test, a_flipped_ciphertext_byte_fails_with_a_clear_error) {
    std::string ref_uri;
    {
        auto vault = open();
        ref_uri = must(vault->put("t1", "k", secret_bytes("value"))).uri();
    }
    flip_sealed_byte(20);
    auto vault = open();
    auto r = vault->get("t1", must(secret_ref::parse(ref_uri)));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::integrity_failure);
    EXPECT_EQ(r.error().detail().find("value"), std::string::npos);
}

TEST_F(local_secret_store_test, swapped_records_fail_to_open) {
    {
        auto vault = open();
        must(vault->put("t1", "alpha", secret_bytes("alpha-secret")));
        must(vault->put("t1", "beta", secret_bytes("beta-secret")));
    }
    // Give alpha beta's sealed record and data key: the authenticated identity no longer matches.
    raw_sql("UPDATE secret_versions SET (wrapped_key, sealed) = (SELECT wrapped_key, sealed FROM secret_versions "
            "WHERE name = 'beta') WHERE name = 'alpha'");
    auto vault = open();
    auto r = vault->get("t1", {"local", "t1", "alpha", 1});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::integrity_failure);
    EXPECT_EQ(must(vault->get("t1", {"local", "t1", "beta", 1})).view(), "beta-secret");
}

TEST_F(local_secret_store_test, a_wrong_master_key_opens_nothing) {
    {
        auto vault = open();
        must(vault->put("t1", "k", secret_bytes("value")));
    }
    auto text = slurp(dir_.file("master.key"));
    auto id = text.substr(0, text.find(' '));
    std::filesystem::remove(dir_.file("master.key"));
    {
        std::ofstream f(dir_.file("master.key"));
        f << id << " " << std::string(64, 'a') << "\n";
    }
    std::filesystem::permissions(dir_.file("master.key"), std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    auto vault = open();
    auto r = vault->get("t1", {"local", "t1", "k", 1});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::integrity_failure);
}

// A new master key only for an empty store: with records, a missing key file is an error naming
// it, and no key is written (it would open none of them, and each secret would fail only when read).
TEST_F(local_secret_store_test, a_missing_key_file_is_generated_only_while_the_store_is_empty) {
    { auto vault = open(); }  // empty: the key file is created
    ASSERT_TRUE(std::filesystem::exists(dir_.file("master.key")));
    std::filesystem::remove(dir_.file("master.key"));
    {
        auto vault = open();  // still empty: a new one is fine
        must(vault->put("t1", "k", secret_bytes("sealed-value")));
    }
    std::filesystem::remove(dir_.file("master.key"));
    auto r = credentials::open_local_secret_store(options());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::secret_store_failure);
    EXPECT_NE(r.error().detail().find(dir_.file("master.key") + " is missing"), std::string::npos) << r.error().detail();
    EXPECT_NE(r.error().detail().find("holds 1 secret version"), std::string::npos) << r.error().detail();
    EXPECT_FALSE(std::filesystem::exists(dir_.file("master.key")));
}

// A key file that is there but cannot be opened is an error naming it, never taken for missing
// and replaced, whether or not the store holds records.
TEST_F(local_secret_store_test, an_unreadable_key_file_is_never_replaced) {
    for (bool with_records : {false, true}) {
        {
            auto vault = open();
            if (with_records) must(vault->put("t1", "k", secret_bytes("sealed-value")));
        }
        auto key = dir_.file("master.key");
        std::filesystem::remove(key);
        std::filesystem::create_symlink("master.key", key);  // a link to itself: open() fails with ELOOP
        auto r = credentials::open_local_secret_store(options());
        ASSERT_FALSE(r) << with_records;
        EXPECT_EQ(r.error(), errc::secret_store_failure);
        EXPECT_NE(r.error().detail().find(key), std::string::npos) << r.error().detail();
        EXPECT_TRUE(std::filesystem::is_symlink(key)) << "replaced";
        std::filesystem::remove(key);
    }
}

// verify_master_key (what the host's /readyz asks) opens the newest record's data key: a key file
// holding another key under the same id, or not holding the record's key id, fails.
TEST_F(local_secret_store_test, verify_master_key_fails_when_the_key_file_is_not_the_one_the_records_need) {
    EXPECT_TRUE(open()->verify_master_key()) << "an empty store passes";
    {
        auto vault = open();
        must(vault->put("t1", "k", secret_bytes("value")));
        EXPECT_TRUE(vault->verify_master_key());
    }
    auto original = slurp(dir_.file("master.key"));
    auto id = original.substr(0, original.find(' '));
    auto write_key = [&](std::string const& text) {
        std::filesystem::remove(dir_.file("master.key"));
        std::ofstream(dir_.file("master.key")) << text;
        std::filesystem::permissions(dir_.file("master.key"), std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    };
    for (auto const& wrong : {id + " " + std::string(64, 'a') + "\n", "mk-other " + std::string(64, 'a') + "\n"}) {
        write_key(wrong);
        auto vault = open();
        auto r = vault->verify_master_key();
        ASSERT_FALSE(r) << wrong;
        EXPECT_EQ(r.error(), errc::integrity_failure);
        EXPECT_NE(r.error().detail().find(dir_.file("master.key")), std::string::npos) << r.error().detail();
    }
    write_key(original);
    EXPECT_TRUE(open()->verify_master_key());
}

TEST_F(local_secret_store_test, a_key_file_readable_by_others_is_refused) {
    { auto vault = open(); }
    std::filesystem::permissions(dir_.file("master.key"), std::filesystem::perms::others_read, std::filesystem::perm_options::add);
    auto r = credentials::open_local_secret_store(options());
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().detail().find("chmod 600"), std::string::npos);
}

TEST_F(local_secret_store_test, the_master_key_can_come_from_the_environment) {
    ::setenv("INTEGRATION_TEST_MASTER_KEY", std::string(64, 'b').c_str(), 1);
    auto o = options();
    o.key_env = "INTEGRATION_TEST_MASTER_KEY";
    auto vault = must(credentials::open_local_secret_store(o));
    auto ref = must(vault->put("t1", "k", secret_bytes("from-env")));
    EXPECT_EQ(must(vault->get("t1", ref)).view(), "from-env");
    EXPECT_FALSE(std::filesystem::exists(dir_.file("master.key")));
    EXPECT_EQ(vault->rotate_master_key().error(), errc::invalid_state);
    ::setenv("INTEGRATION_TEST_MASTER_KEY", "not-hex", 1);
    EXPECT_EQ(credentials::open_local_secret_store(o).error(), errc::invalid_argument);
    ::unsetenv("INTEGRATION_TEST_MASTER_KEY");
}

TEST_F(local_secret_store_test, master_key_rotation_under_concurrent_reads_loses_nothing) {
    auto vault = open();
    constexpr int secrets = 300;
    std::vector<secret_ref> refs;
    for (int i = 0; i < secrets; ++i)
        refs.push_back(must(vault->put("t1", "s" + std::to_string(i), secret_bytes("value-" + std::to_string(i)))));
    auto old_id = vault->current_key_id();
    std::atomic<bool> done{false};
    std::atomic<int> reads{0}, bad{0};
    std::vector<std::thread> readers;
    for (int t = 0; t < 3; ++t)
        readers.emplace_back([&, t] {
            for (int i = t; !done.load(); i = (i + 7) % secrets) {
                auto v = vault->get("t1", refs[static_cast<std::size_t>(i)]);
                if (!v || v->view() != "value-" + std::to_string(i)) ++bad;
                ++reads;
            }
        });
    // Writes go on during the rotation too.
    std::thread writer([&] {
        for (int i = 0; i < 50; ++i) must(vault->put("t1", "during-" + std::to_string(i), secret_bytes("d")));
    });
    clock_.advance(std::chrono::milliseconds(5));
    auto resealed = must(vault->rotate_master_key());
    writer.join();
    done = true;
    for (auto& th : readers) th.join();
    EXPECT_EQ(bad.load(), 0);
    EXPECT_GT(reads.load(), 0);
    EXPECT_GE(resealed, static_cast<std::size_t>(secrets));
    EXPECT_NE(vault->current_key_id(), old_id);
    // The old key is gone from the file, and everything opens after a restart with the new one.
    EXPECT_EQ(slurp(dir_.file("master.key")).find(old_id), std::string::npos);
    vault.reset();
    auto reopened = open();
    for (int i = 0; i < secrets; ++i)
        EXPECT_EQ(must(reopened->get("t1", refs[static_cast<std::size_t>(i)])).view(), "value-" + std::to_string(i));
    EXPECT_EQ(must(reopened->get("t1", {"local", "t1", "during-49", 1})).view(), "d");
}

/** The lines of a key file: one per master key it holds. */
std::size_t keys_in(std::string const& path) {
    auto text = slurp(path);
    return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

// Two processes share the store's files (two stores opened on them here). One rotates the master
// key; the other, which held only the old key, goes on writing and reading: what it writes is
// sealed under the key file's current key (not the one the rotation dropped), what the first
// writes opens for it, and everything opens after both restart.
TEST_F(local_secret_store_test, a_master_key_another_process_rotated_is_taken_up) {
    auto a = open();
    auto b = open();
    auto before = must(b->put("t1", "before", secret_bytes("v0")));
    must(a->rotate_master_key());
    auto from_b = must(b->put("t1", "from-b", secret_bytes("v1")));
    auto from_a = must(a->put("t1", "from-a", secret_bytes("v2")));
    EXPECT_EQ(must(b->get("t1", from_a)).view(), "v2") << "sealed under a key b did not hold yet";
    EXPECT_EQ(must(b->get("t1", before)).view(), "v0");
    EXPECT_EQ(b->current_key_id(), a->current_key_id());
    a.reset();
    b.reset();
    auto reopened = open();
    EXPECT_TRUE(reopened->verify_master_key());
    EXPECT_EQ(must(reopened->get("t1", before)).view(), "v0");
    EXPECT_EQ(must(reopened->get("t1", from_b)).view(), "v1") << "sealed under the key the rotation dropped";
    EXPECT_EQ(must(reopened->get("t1", from_a)).view(), "v2");
    EXPECT_EQ(keys_in(dir_.file("master.key")), 1u);
}

// An operator restores an older copy of the key file, without the current key, while the store
// runs: the store keeps the key it holds (it reads and re-seals with it), seals new versions under
// the file's key, and its next rotation writes every key back before re-sealing, so nothing
// sealed under the dropped key is lost.
TEST_F(local_secret_store_test, a_key_file_restored_from_an_older_copy_loses_no_key_the_store_holds) {
    auto vault = open();
    auto older = slurp(dir_.file("master.key"));
    auto first = must(vault->put("t1", "first", secret_bytes("v1")));
    must(vault->rotate_master_key());  // the file now holds only the new key, which seals `first`
    auto second = must(vault->put("t1", "second", secret_bytes("v2")));
    std::filesystem::remove(dir_.file("master.key"));
    std::ofstream(dir_.file("master.key")) << older;
    std::filesystem::permissions(dir_.file("master.key"), std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    auto third = must(vault->put("t1", "third", secret_bytes("v3")));  // under the restored file's key
    EXPECT_EQ(must(vault->get("t1", first)).view(), "v1");
    EXPECT_EQ(must(vault->get("t1", second)).view(), "v2");
    must(vault->rotate_master_key());
    vault.reset();
    auto reopened = open();
    EXPECT_EQ(must(reopened->get("t1", first)).view(), "v1");
    EXPECT_EQ(must(reopened->get("t1", second)).view(), "v2");
    EXPECT_EQ(must(reopened->get("t1", third)).view(), "v3");
    EXPECT_EQ(keys_in(dir_.file("master.key")), 1u);
}

// Two processes rotating the master key at the same time, while secrets are written, lose
// nothing: each rotation ends on the key file's current key, whichever process made it.
TEST_F(local_secret_store_test, rotations_by_two_processes_at_once_lose_nothing) {
    auto a = open();
    auto b = open();
    std::vector<std::pair<secret_ref, std::string>> kept;
    for (int i = 0; i < 100; ++i)
        kept.emplace_back(must(a->put("t1", "s" + std::to_string(i), secret_bytes("v" + std::to_string(i)))), "v" + std::to_string(i));
    std::vector<std::pair<secret_ref, std::string>> written;
    std::atomic<int> failed{0};
    std::thread ra([&] { for (int i = 0; i < 5; ++i) if (!a->rotate_master_key()) ++failed; });
    std::thread rb([&] { for (int i = 0; i < 5; ++i) if (!b->rotate_master_key()) ++failed; });
    std::thread writer([&] {
        for (int i = 0; i < 100; ++i) {
            auto& store = i % 2 ? *a : *b;
            if (auto r = store.put("t1", "w" + std::to_string(i), secret_bytes("w" + std::to_string(i))))
                written.emplace_back(*r, "w" + std::to_string(i));
            else
                ++failed;
        }
    });
    ra.join();
    rb.join();
    writer.join();
    EXPECT_EQ(failed.load(), 0);
    a.reset();
    b.reset();
    auto reopened = open();
    for (auto const* list : {&kept, &written})
        for (auto const& [ref, value] : *list) {
            auto v = reopened->get("t1", ref);
            ASSERT_TRUE(v) << ref.uri() << ": " << v.error().detail();
            EXPECT_EQ(v->view(), value);
        }
    EXPECT_EQ(keys_in(dir_.file("master.key")), 1u);
}

// Two processes opening a new store at the same moment share one key file: before, each could
// write its own, and what the first sealed no longer opened.
TEST_F(local_secret_store_test, two_processes_opening_a_new_store_at_once_share_one_master_key) {
    for (int round = 0; round < 20; ++round) {
        auto o = options();
        o.path = dir_.file("new-" + std::to_string(round) + ".db");
        o.key_file = dir_.file("new-" + std::to_string(round) + ".key");
        std::optional<result<std::unique_ptr<credentials::local_secret_store>>> opened[2];
        std::atomic<int> ready{0};
        auto opener = [&](int i) {
            ++ready;
            while (ready < 2) std::this_thread::yield();
            opened[i] = credentials::open_local_secret_store(o);
        };
        std::thread ta(opener, 0), tb(opener, 1);
        ta.join();
        tb.join();
        for (auto& r : opened) ASSERT_TRUE(*r) << "round " << round << ": " << r->error().detail();
        auto a = std::move(**opened[0]);
        auto b = std::move(**opened[1]);
        auto x = must(a->put("t1", "x", secret_bytes("from-a")));
        auto y = must(b->put("t1", "y", secret_bytes("from-b")));
        a.reset();
        b.reset();
        auto reopened = must(credentials::open_local_secret_store(o));
        ASSERT_TRUE(reopened->get("t1", x)) << "round " << round;
        ASSERT_TRUE(reopened->get("t1", y)) << "round " << round;
    }
}

TEST(fingerprinter, is_keyed_stable_and_never_the_secret) {
    temp_dir dir;
    auto f1 = must(credentials::fingerprinter::load_or_create(dir.file("fp.key")));
    auto again = must(credentials::fingerprinter::load_or_create(dir.file("fp.key")));
    temp_dir other;
    auto f2 = must(credentials::fingerprinter::load_or_create(other.file("fp.key")));
    auto a = f1.fingerprint(secret_bytes("short-key"));
    EXPECT_EQ(a.size(), 12u + 64u);
    EXPECT_EQ(a.rfind("hmac-sha256:", 0), 0u);
    EXPECT_EQ(a, again.fingerprint(secret_bytes("short-key")));
    EXPECT_NE(a, f1.fingerprint(secret_bytes("short-kez")));
    EXPECT_NE(a, f2.fingerprint(secret_bytes("short-key")));  // a different installation key
    struct stat st {};
    ASSERT_EQ(::stat(dir.file("fp.key").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
}

// Processes opening a new data directory at once each make a key: one file results, and every
// one of them fingerprints with the key that file holds (the one a restart reads), none failing.
TEST(fingerprinter, creators_racing_on_a_new_key_file_all_use_the_one_that_lands) {
    for (int round = 0; round < 20; ++round) {
        temp_dir dir;
        constexpr int creators = 6;
        std::atomic<int> ready{0};
        std::vector<std::optional<result<credentials::fingerprinter>>> made(creators);
        std::vector<std::thread> threads;
        for (int i = 0; i < creators; ++i)
            threads.emplace_back([&, i] {
                ++ready;
                while (ready < creators) std::this_thread::yield();
                made[static_cast<std::size_t>(i)] = credentials::fingerprinter::load_or_create(dir.file("fp.key"));
            });
        for (auto& t : threads) t.join();
        auto reread = must(credentials::fingerprinter::load_or_create(dir.file("fp.key")));
        auto expected = reread.fingerprint(secret_bytes("k"));
        for (auto& m : made) {
            ASSERT_TRUE(*m) << "round " << round << ": " << m->error().detail();
            EXPECT_EQ((*m)->fingerprint(secret_bytes("k")), expected) << "round " << round << ": a key that is not the file's";
        }
        std::size_t files = 0;
        for (auto const& e : std::filesystem::directory_iterator(dir.path())) files += e.is_regular_file();
        EXPECT_EQ(files, 1u) << "a temp file was left beside the key";
    }
}

}  // namespace
}  // namespace integration::testing
