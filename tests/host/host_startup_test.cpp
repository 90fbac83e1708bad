// What `serve` checks before it listens: the data directory's mode (never changed), and a master
// key that can open the sealed secrets already in secrets.db (never silently replaced).

#include "host/host_process.hpp"
#include "host/http_client.hpp"

#include <gtest/gtest.h>

#include <boost/json/object.hpp>

#include <sys/stat.h>

#include <fstream>
#include <sstream>

namespace integration::testing {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

std::string str(json::value const& v, char const* name) {
    return std::string(v.at(name).as_string());
}

/** A command run to its exit (at most 20 s): its exit code and everything it printed. */
struct exit_result {
    int code = -1;
    std::string output;
};
exit_result run_to_exit(std::string const& args) {
    auto out =
        run_and_capture("timeout 20 " + std::string(INTEGRATION_HOST_BIN) + " " + args + " 2>&1; echo \"exit=$?\"");
    auto at = out.rfind("exit=");
    return {std::stoi(out.substr(at + 5)), out.substr(0, at)};
}

fs::perms mode(fs::path const& p) {
    return fs::status(p).permissions();
}

std::string slurp(fs::path const& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// Finding 16: a data directory that group or others can write is refused with its name, for
// `serve` and `keys create` alike, and its mode is left as it was (never chmod'ed to 0700).
TEST(host_data_dir, one_others_can_write_is_refused_and_left_as_it_was) {
    scratch_dir root("datadir-open");
    for (auto perms : {fs::perms::all, fs::perms::owner_all | fs::perms::group_all}) {
        auto shared = root.path() / "shared";
        fs::create_directory(shared);
        fs::permissions(shared, perms);
        for (auto const& command : {"serve --listen 127.0.0.1:0 --data " + shared.string(),
                                    "keys create --tenant t --data " + shared.string()}) {
            auto r = run_to_exit(command);
            EXPECT_NE(r.code, 0) << command;
            EXPECT_NE(r.output.find(shared.string()), std::string::npos) << r.output;
            EXPECT_NE(r.output.find("writable by group or others"), std::string::npos) << r.output;
            EXPECT_EQ(mode(shared), perms) << command;
            EXPECT_FALSE(fs::exists(shared / "integration.db")) << command;
        }
        fs::remove_all(shared);
    }
}

// API keys, Idempotency-Key records and inbound webhook registrations moved from the host's own
// host.db into the store: a data directory from before keeps working, its host.db imported once.
TEST(host_data_dir, a_former_host_db_is_imported_on_the_first_start) {
    scratch_dir dir("legacy-host-db");
    std::string const key = "ik_" + std::string(43, 'L');
    auto hash = run_and_capture("printf %s " + key + " | sha256sum");
    hash = hash.substr(0, 64);
    auto legacy = (dir.path() / "host.db").string();
    run_and_capture("sqlite3 " + legacy + " \"CREATE TABLE api_keys (key_hash TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, "
                    "admin INTEGER NOT NULL, created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))); "
                    "CREATE TABLE idempotency_keys (tenant_id TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL, "
                    "created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), PRIMARY KEY (tenant_id, key)); "
                    "CREATE TABLE inbound_webhooks (tenant_id TEXT NOT NULL, connection_id TEXT NOT NULL, scheme TEXT NOT NULL, "
                    "secret_name TEXT NOT NULL, PRIMARY KEY (tenant_id, connection_id)); "
                    "INSERT INTO api_keys (key_hash, tenant_id, admin) VALUES ('" + hash + "', 'old-tenant', 0);\"");
    ASSERT_TRUE(fs::exists(legacy));
    {
        host_process host(dir.string());
        EXPECT_EQ(api(host.port(), key).get("/integrations/providers").status, 200);
        EXPECT_EQ(api(host.port(), "ik_" + std::string(43, 'M')).get("/integrations/providers").status, 401);
    }
    EXPECT_FALSE(fs::exists(legacy));
    EXPECT_TRUE(fs::exists(dir.path() / "host.db.imported"));
    host_process again(dir.string());  // nothing left to import: the key still works
    EXPECT_EQ(api(again.port(), key).get("/integrations/providers").status, 200);
}

// Finding 16: a data directory that does not exist is created 0700; an existing 0755 one is used
// and keeps its mode.
TEST(host_data_dir, a_new_one_is_created_private_and_an_existing_0755_one_keeps_its_mode) {
    scratch_dir root("datadir-modes");
    auto fresh = root.path() / "new" / "data";
    auto r = run_to_exit("keys create --tenant t --data " + fresh.string());
    EXPECT_EQ(r.code, 0) << r.output;
    EXPECT_EQ(mode(fresh), fs::perms::owner_all);

    auto kept = root.path() / "kept";
    fs::create_directory(kept);
    fs::permissions(kept, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
    auto key = create_key(kept.string(), "t");
    {
        host_process host(kept.string());
        EXPECT_EQ(api(host.port(), key).get("/integrations/providers").status, 200);
    }
    EXPECT_EQ(mode(kept), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
}

// Finding 10: once secrets.db holds sealed records, a missing or unreadable master.key stops the
// host with an error naming the file, and no new key is written over it; a key file that does
// not open the records leaves /readyz not ready; the right key makes it ready again.
TEST(host_secrets, a_missing_or_wrong_master_key_never_replaces_the_one_the_secrets_need) {
    scratch_dir dir("masterkey");
    auto key = create_key(dir.string(), "tenant-k");
    {
        host_process host(dir.string());
        api client(host.port(), key);
        auto p = client.post("/integrations/providers", json::object{{"key", "sealed"},
                                                                     {"displayName", "S"},
                                                                     {"category", "BusinessSystem"},
                                                                     {"authModel", "ApiKey"},
                                                                     {"baseUrl", "http://127.0.0.1:9"},
                                                                     {"capabilities", json::array{"x.send"}}});
        ASSERT_EQ(p.status, 201) << p.body;
        auto c = client.post("/integrations/credentials",
                             json::object{{"providerId", str(p.json(), "providerId")},
                                          {"authMode", "ApiKey"},
                                          {"secret", "sk_sealed_canary"},
                                          {"apiKey", json::object{{"in", "header"}, {"name", "X-Api-Key"}}}});
        ASSERT_EQ(c.status, 201) << c.body;
        EXPECT_EQ(api(host.port(), "").get("/readyz").status, 200);
    }
    auto master = dir.path() / "master.key";
    auto original = slurp(master);
    auto serve = "serve --listen 127.0.0.1:0 --data " + dir.string();

    fs::remove(master);
    auto missing = run_to_exit(serve);
    EXPECT_NE(missing.code, 0) << missing.output;
    EXPECT_NE(missing.output.find(master.string()), std::string::npos) << missing.output;
    EXPECT_FALSE(fs::exists(master)) << "a new master key was written";

    fs::create_symlink(master.filename(), master);  // a link to itself: open() fails with ELOOP
    auto unreadable = run_to_exit(serve);
    EXPECT_NE(unreadable.code, 0) << unreadable.output;
    EXPECT_NE(unreadable.output.find(master.string()), std::string::npos) << unreadable.output;
    EXPECT_TRUE(fs::is_symlink(master)) << "the unreadable key file was replaced";
    fs::remove(master);

    auto write_key = [&](std::string const& text) {
        std::ofstream(master) << text;
        fs::permissions(master, fs::perms::owner_read | fs::perms::owner_write);
    };
    write_key(original.substr(0, original.find(' ')) + " " + std::string(64, 'a') + "\n");  // same id, other key
    {
        host_process host(dir.string());
        auto ready = api(host.port(), "").get("/readyz");
        EXPECT_EQ(ready.status, 503) << ready.body;
        EXPECT_EQ(str(ready.json().at("checks"), "secretStore"), "unavailable") << ready.body;
    }
    write_key(original);
    {
        host_process host(dir.string());
        auto ready = api(host.port(), "").get("/readyz");
        EXPECT_EQ(ready.status, 200) << ready.body;
    }
}

}  // namespace
}  // namespace integration::testing
