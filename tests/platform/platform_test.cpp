#include <integration/platform.hpp>

#include "storage/fixtures.hpp"
#include "support/keep_alive_server.hpp"
#include "support/loopback_server.hpp"

#include <integration/services/webhook_signature.hpp>

#include <integration/backends/filesystem/filesystem_blob_store.hpp>
#include <integration/backends/local_vault/local_secret_store.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <initializer_list>
#include <set>
#include <thread>
#include <vector>

namespace integration::testing {
namespace {

namespace fs = std::filesystem;

// Workers off unless a test starts them, so that nothing sweeps behind a test's back.
platform_options quiet(std::string data_dir) {
    return {.data_dir = std::move(data_dir), .workers = {.start = false}};
}

std::string error_of(result<std::unique_ptr<platform>> const& r) {
    EXPECT_FALSE(r) << "opened, expected an error";
    return r ? std::string() : r.error().message();
}

providers::integration_provider find_provider(platform& p, request_context const& ctx, std::string const& id) {
    return must(
        storage::read_for(p.store(), ctx, [&](storage::unit_of_work& uow) { return uow.providers().find(id); }));
}

TEST(platform_test, opening_the_embedded_default_creates_its_files_under_data_dir) {
    temp_dir tmp;
    auto dir = tmp.path() / "data";
    auto p = must(open_platform(quiet(dir.string())));
    EXPECT_TRUE(fs::is_regular_file(dir / "integration.db"));
    EXPECT_TRUE(fs::is_regular_file(dir / "secrets.db"));
    EXPECT_TRUE(fs::is_regular_file(dir / "fingerprint.key"));
    EXPECT_TRUE(fs::is_directory(dir / "blobs"));
    if (!std::getenv("INTEGRATION_MASTER_KEY")) {
        EXPECT_TRUE(fs::is_regular_file(dir / "master.key"));
    }
    struct stat st {};
    ASSERT_EQ(::stat(dir.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u) << "a new data directory is private to the service account";
    EXPECT_TRUE(storage::sqlite_store_stats(p->store())) << "the default store is SQLite";
}

// Small bodies share SQLite commits; a large one is a file of its own. Both read back through the
// one blob store, and a blob a former layout wrote as a file is still found.
TEST(platform_test, the_default_blob_store_keeps_small_blobs_in_sqlite_and_large_ones_in_files) {
    temp_dir tmp;
    auto dir = tmp.path() / "data";
    {
        auto files = must(blobs::open_filesystem_blob_store((dir / "blobs").string()));
        must(files->put("t1", "runs/old/response", "written by a former host"));
    }
    auto p = must(open_platform(quiet(dir.string())));
    std::string large(small_blob_limit + 1, 'x');
    auto refs = must(p->blobs().put_many({{"t1", "runs/r1/request", "small"}, {"t1", "runs/r1/response", large}}));
    ASSERT_EQ(refs.size(), 2u);
    EXPECT_EQ(must(p->blobs().get("t1", refs[0])), "small");
    EXPECT_EQ(must(p->blobs().get("t1", refs[1])), large);
    EXPECT_EQ(must(p->blobs().get("t1", "blob://t1/runs/old/response")), "written by a former host");
    EXPECT_TRUE(fs::is_regular_file(dir / "blobs.db"));
    EXPECT_TRUE(fs::is_regular_file(dir / "blobs" / "t1" / "runs" / "r1" / "response"));
    EXPECT_FALSE(fs::exists(dir / "blobs" / "t1" / "runs" / "r1" / "request")) << "a small body is no file of its own";
    // Replaced by a small body, the large one is gone: a read finds the new content only.
    must(p->blobs().put("t1", "runs/r1/response", "now small"));
    EXPECT_EQ(must(p->blobs().get("t1", refs[1])), "now small");
    EXPECT_FALSE(fs::exists(dir / "blobs" / "t1" / "runs" / "r1" / "response"));
    // So through put_many, both ways across the limit.
    must(p->blobs().put_many({{"t1", "runs/r1/response", large}}));
    EXPECT_EQ(must(p->blobs().get("t1", refs[1])), large);
    must(p->blobs().put_many({{"t1", "runs/r1/response", "small again"}}));
    EXPECT_EQ(must(p->blobs().get("t1", refs[1])), "small again");
    EXPECT_FALSE(fs::exists(dir / "blobs" / "t1" / "runs" / "r1" / "response"));
}

// A worker's interval of 0 made it spin, and a huge one overflowed its wait (and spun too):
// both are refused when the platform opens, naming the option.
TEST(platform_test, worker_intervals_of_nothing_or_past_a_week_are_refused) {
    temp_dir tmp;
    auto dir = (tmp.path() / "data").string();
    auto with = [&](auto change) {
        auto o = quiet(dir);
        change(o);
        return open_platform(o);
    };
    using std::chrono::milliseconds;
    EXPECT_NE(error_of(with([](platform_options& o) { o.workers.retry = milliseconds(0); })).find("workers.retry"), std::string::npos);
    EXPECT_NE(error_of(with([](platform_options& o) { o.workers.outbox = milliseconds(10'000'000'000'000); })).find("workers.outbox"),
              std::string::npos);
    EXPECT_NE(error_of(with([](platform_options& o) { o.workers.retention = milliseconds(-1); })).find("workers.retention"),
              std::string::npos);
    EXPECT_NE(error_of(with([](platform_options& o) { o.probes.interval = std::chrono::seconds(0); })).find("probes.interval"),
              std::string::npos);
    must(with([](platform_options& o) { o.workers.rotation = std::chrono::hours(24 * 7); }));
    for (auto bad : std::initializer_list<void (*)(platform_options&)>{
             [](platform_options& o) { o.outbox.batch = 0; }, [](platform_options& o) { o.outbox.batch = 501; },
             [](platform_options& o) { o.outbox.max_attempts = 0; },
             [](platform_options& o) { o.outbox.retry_base = milliseconds(0); },
             [](platform_options& o) { o.outbox.retry_cap = milliseconds(10); }})
        EXPECT_NE(error_of(with(bad)).find("platform_options.outbox"), std::string::npos);
    // The delivery worker's: no wait between claims, a lease that may lapse during its send.
    for (auto bad : std::initializer_list<void (*)(platform_options&)>{
             [](platform_options& o) { o.webhooks.delivery.idle_poll = milliseconds(0); },
             [](platform_options& o) { o.webhooks.delivery.lease_margin = std::chrono::seconds(-60); },
             [](platform_options& o) { o.webhooks.delivery.lease_margin = milliseconds(10); },
             [](platform_options& o) { o.webhooks.delivery.local_retry = milliseconds(0); },
             [](platform_options& o) { o.webhooks.delivery.jitter = 1.5; },
             [](platform_options& o) { o.webhooks.delivery.jitter = std::nan(""); }})
        EXPECT_NE(error_of(with(bad)).find("platform_options.webhooks.delivery"), std::string::npos);
    must(with([](platform_options& o) { o.webhooks.delivery.jitter = 0; }));
}

TEST(platform_test, url_schemes_choose_the_backends) {
    temp_dir tmp;
    auto elsewhere = tmp.path() / "elsewhere";
    fs::create_directories(elsewhere);
    auto p = must(open_platform(
        {.data_dir = (tmp.path() / "data").string(),
         .store = "sqlite://" + (elsewhere / "store.db").string(),
         .secrets = "local://" + (elsewhere / "vault.db").string() + "?key_file=" + (elsewhere / "vault.key").string(),
         .blobs = "sqlite://" + (elsewhere / "blobs.db").string(),
         .workers = {.start = false}}));
    must(p->blobs().put("t1", "runs/r1/request", "body"));
    must(p->secrets().put("t1", "k", secret_bytes("s3cr3t")));
    EXPECT_TRUE(fs::is_regular_file(elsewhere / "store.db"));
    EXPECT_TRUE(fs::is_regular_file(elsewhere / "vault.db"));
    EXPECT_TRUE(fs::is_regular_file(elsewhere / "blobs.db"));
    if (!std::getenv("INTEGRATION_MASTER_KEY")) {
        EXPECT_TRUE(fs::is_regular_file(elsewhere / "vault.key"));
    }
    EXPECT_FALSE(fs::exists(tmp.path() / "data" / "integration.db"));
    EXPECT_FALSE(fs::exists(tmp.path() / "data" / "secrets.db"));
    EXPECT_FALSE(fs::exists(tmp.path() / "data" / "blobs"));
    EXPECT_TRUE(fs::is_regular_file(tmp.path() / "data" / "fingerprint.key")) << "the data directory keeps the rest";
}

TEST(platform_test, an_unknown_scheme_is_a_clear_error_naming_the_known_ones) {
    temp_dir tmp;
    auto dir = (tmp.path() / "data").string();
    auto store = open_platform({.data_dir = dir, .store = "postgresql://db.internal/integration"});
    ASSERT_FALSE(store);
    EXPECT_EQ(store.error(), errc::invalid_argument);
    auto text = error_of(store);
    EXPECT_NE(text.find("store URL postgresql://db.internal/integration"), std::string::npos) << text;
    EXPECT_NE(text.find("no backend for the scheme postgresql:"), std::string::npos) << text;
    EXPECT_NE(text.find("known: sqlite:"), std::string::npos) << text;

    text = error_of(open_platform({.data_dir = dir, .secrets = "vault://kv/integration"}));
    EXPECT_NE(text.find("secrets URL vault://kv/integration"), std::string::npos) << text;
    EXPECT_NE(text.find("known: local:"), std::string::npos) << text;

    text = error_of(open_platform({.data_dir = dir, .blobs = "s3://bucket/runs"}));
    EXPECT_NE(text.find("blobs URL s3://bucket/runs"), std::string::npos) << text;
    EXPECT_NE(text.find("known: file:, sqlite:"), std::string::npos) << text;
}

TEST(platform_test, a_malformed_url_is_a_clear_error) {
    temp_dir tmp;
    auto dir = (tmp.path() / "data").string();
    struct bad_case {
        platform_options options;
        std::string says;
    };
    std::vector<bad_case> cases{
        {{.data_dir = dir, .store = "integration.db"}, "'integration.db' is not a backend URL"},
        {{.data_dir = dir, .store = "sqlite:///a b.db"}, "is not a backend URL"},
        {{.data_dir = dir, .store = "sqlite://db.internal/integration.db"},
         "names a local path, not the host db.internal"},
        {{.data_dir = dir, .store = "sqlite:"}, "a sqlite: URL needs a path"},
        {{.data_dir = dir, .blobs = "file://"}, "a file: URL needs a path"},
        {{.data_dir = dir, .secrets = "local://user:pw@/x.db"}, "carries a user name or password"},
        // Not even parsed ('^' is not allowed in a user name), or a password as a parameter.
        {{.data_dir = dir, .store = "postgresql://app:pw^x@db/x"}, "'postgresql:...' is not a backend URL"},
        {{.data_dir = dir, .store = "postgresql://db/x?password=pw"}, "store URL postgresql://db/x: no backend"},
        {{.data_dir = dir, .store = "sqlite:///tmp/x.db?password=pw"}, "'password' is not one of them"},
    };
    for (auto& c : cases) {
        auto r = open_platform(c.options);
        ASSERT_FALSE(r) << c.says;
        EXPECT_EQ(r.error(), errc::invalid_argument) << c.says;
        EXPECT_NE(r.error().message().find(c.says), std::string::npos) << r.error().message();
        EXPECT_EQ(r.error().message().find("pw"), std::string::npos) << "a password in a URL is never repeated";
    }
}

TEST(platform_test, a_backend_url_is_taken_apart) {
    auto abs = must(backend_url::parse("SQLite:///var/lib/integration%20db/i.db?busy=5"));
    EXPECT_EQ(abs.scheme, "sqlite");
    EXPECT_EQ(must(abs.local_path()), "/var/lib/integration db/i.db");
    EXPECT_EQ(abs.params.at("busy"), "5");
    auto rel = must(backend_url::parse("sqlite:data/i.db"));
    EXPECT_EQ(rel.path, "data/i.db");
    EXPECT_EQ(must(rel.local_path()), (fs::current_path() / "data" / "i.db").string()) << "resolved when asked";
    EXPECT_EQ(must(must(backend_url::parse("sqlite:data/../x/./i.db")).local_path()),
              (fs::current_path() / "x" / "i.db").string());
    EXPECT_EQ(must(must(backend_url::parse("file://localhost/srv/blobs")).local_path()), "/srv/blobs");
}

// A parameter a built-in backend does not read (a misspelt `key_file`), a port or a fragment is
// refused, naming it, before anything is created: read as absent, a `keyfile=` typo made the
// vault generate a master key beside its database, the very thing a separate key file avoids.
TEST(platform_test, a_backend_url_with_a_parameter_it_does_not_read_a_port_or_a_fragment_is_refused) {
    temp_dir tmp;
    auto const schemes = builtin_schemes();
    backend_environment const env{.clock = &system_clock::instance()};
    auto dir = tmp.path().string();
    auto vault = schemes.open_secret_store("local://" + dir + "/secrets.db?keyfile=" + dir + "/k.key", env);
    ASSERT_FALSE(vault);
    EXPECT_EQ(vault.error(), errc::invalid_argument);
    EXPECT_NE(vault.error().detail().find("'keyfile'"), std::string::npos) << vault.error().detail();
    EXPECT_NE(vault.error().detail().find("only key_file"), std::string::npos) << vault.error().detail();
    EXPECT_TRUE(fs::is_empty(tmp.path())) << "the vault was opened despite the typo";
    auto store = schemes.open_store("sqlite://" + dir + "/i.db?busy_timeout=5000", env);
    ASSERT_FALSE(store);
    EXPECT_NE(store.error().detail().find("takes no parameters"), std::string::npos) << store.error().detail();
    EXPECT_EQ(schemes.open_blob_store("file://" + dir + "/blobs#x", env).error(), errc::invalid_argument);
    EXPECT_EQ(schemes.open_blob_store("sqlite://localhost:99" + dir + "/b.db", env).error(), errc::invalid_argument);
    EXPECT_TRUE(fs::is_empty(tmp.path()));
    must(schemes.open_secret_store("local://" + dir + "/secrets.db?key_file=" + dir + "/k.key", env));
    EXPECT_TRUE(fs::exists(tmp.path() / "k.key"));
}

// A relative path names a file under the directory current when the backend opens. Kept relative,
// it was looked up again at each use: after a chdir the SQLite store took its file for deleted and
// refused every write, blobs went to another directory, and the vault lost its key file.
// The working directory in `opened_in` until `move` takes it to `moved_to`; given back at the end.
struct moved_cwd {
    fs::path opened_in, moved_to;
    fs::path previous = fs::current_path();
    explicit moved_cwd(fs::path const& root) : opened_in(root / "opened-in"), moved_to(root / "moved-to") {
        fs::create_directories(opened_in);
        fs::create_directories(moved_to);
        fs::current_path(opened_in);
    }
    ~moved_cwd() {
        std::error_code ec;
        fs::current_path(previous, ec);
    }
    void move() const { fs::current_path(moved_to); }
};

// A store and a blob store opened by the relative names "integ.db" and "blobs" in `opened_in`,
// used after the working directory moved: they read and write the files they opened.
void expect_files_where_opened(storage::store& store, blobs::blob_store& files, fs::path const& opened_in) {
    auto ctx = request_context::for_tenant("t1");
    auto provider_id = save_active_provider(store, ctx, system_clock::instance().now());
    auto found =
        storage::read_for(store, ctx, [&](storage::unit_of_work& uow) { return uow.providers().find(provider_id); });
    EXPECT_EQ(must(found).id(), provider_id);
    auto ref = must(files.put("t1", "runs/r1/request", "body"));
    EXPECT_EQ(must(files.get("t1", ref)), "body");
    EXPECT_TRUE(fs::is_regular_file(opened_in / "blobs" / "t1" / "runs" / "r1" / "request"));
}

TEST(platform_test, a_relative_backend_path_keeps_naming_the_same_file_after_a_chdir) {
    temp_dir tmp;
    moved_cwd cwd(tmp.path());
    auto const& opened_in = cwd.opened_in;
    auto const& moved_to = cwd.moved_to;
    auto const schemes = builtin_schemes();
    backend_environment const env{.clock = &system_clock::instance()};
    auto store = must(schemes.open_store("sqlite:integ.db", env));
    auto files = must(schemes.open_blob_store("file:blobs", env));
    auto vault = must(schemes.open_secret_store("local:secrets.db?key_file=vault.key", env));
    cwd.move();

    expect_files_where_opened(*store, *files, opened_in);
    auto secret = must(vault->put("t1", "k", secret_bytes("s3cr3t")));
    EXPECT_TRUE(must(vault->get("t1", secret)).view() == "s3cr3t") << "the secret read back differs";
    if (!std::getenv("INTEGRATION_MASTER_KEY")) {
        // A rotation reads the key file again.
        auto* local = dynamic_cast<credentials::local_secret_store*>(vault.get());
        ASSERT_NE(local, nullptr);
        must(local->rotate_master_key());
        EXPECT_TRUE(fs::is_regular_file(opened_in / "vault.key"));
    }
    EXPECT_TRUE(fs::is_empty(moved_to)) << "a backend wrote under the directory it did not open in";
}

// The same through the backends' own open functions (open_sqlite_store's documentation opens
// "data/integration.db"): the store reopens its file by name for its reads and for the WAL's
// sync, and the blob store opens each file by name.
TEST(platform_test, a_store_and_a_blob_store_opened_directly_by_a_relative_path_keep_their_files_after_a_chdir) {
    temp_dir tmp;
    moved_cwd cwd(tmp.path());
    auto const& opened_in = cwd.opened_in;
    auto const& moved_to = cwd.moved_to;
    auto store = must(storage::open_sqlite_store({.path = "integ.db"}));
    auto files = must(blobs::open_filesystem_blob_store("blobs"));
    cwd.move();

    expect_files_where_opened(*store, *files, opened_in);
    EXPECT_TRUE(fs::is_empty(moved_to)) << "a backend wrote under the directory it did not open in";
}

TEST(platform_test, a_scheme_of_your_own_adds_a_backend) {
    temp_dir tmp;
    auto schemes = builtin_schemes();
    int opened = 0;
    schemes.add_store(
        "custom",
        [&](backend_url const& url, backend_environment const& env) -> result<std::unique_ptr<storage::store>> {
            ++opened;
            return storage::open_sqlite_store({.path = (tmp.path() / url.path).string(), .clock = env.clock});
        });
    auto p = must(open_platform({.data_dir = (tmp.path() / "data").string(),
                                 .store = "custom:mine.db",
                                 .workers = {.start = false},
                                 .schemes = &schemes}));
    EXPECT_EQ(opened, 1);
    EXPECT_TRUE(fs::is_regular_file(tmp.path() / "mine.db"));
    auto text =
        error_of(open_platform({.data_dir = (tmp.path() / "data").string(), .store = "memory:", .schemes = &schemes}));
    EXPECT_NE(text.find("known: custom:, sqlite:"), std::string::npos) << text;
}

TEST(platform_test, a_data_dir_others_may_write_is_refused) {
    temp_dir tmp;
    auto dir = tmp.path() / "shared";
    fs::create_directories(dir);
    fs::permissions(dir, fs::perms::all);
    auto r = open_platform(quiet(dir.string()));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::invalid_argument);
    EXPECT_NE(r.error().message().find("writable by group or others"), std::string::npos) << r.error().message();
    EXPECT_FALSE(fs::exists(dir / "integration.db"));
}

// The retention worker's sweep would never end with a batch of 0: refused when the platform opens.
TEST(platform_test, a_retention_batch_of_zero_is_refused_at_open) {
    temp_dir tmp;
    auto options = quiet((tmp.path() / "data").string());
    options.retention.batch = 0;
    auto r = open_platform(options);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::invalid_argument);
    EXPECT_NE(r.error().message().find("retention_options.batch"), std::string::npos) << r.error().message();
    EXPECT_FALSE(fs::exists(tmp.path() / "data"));
}

TEST(platform_test, run_options_the_run_service_cannot_work_with_are_refused_at_open) {
    temp_dir tmp;
    auto options = quiet((tmp.path() / "data").string());
    options.runs.attempt_timeout = std::chrono::milliseconds(0);
    auto r = open_platform(options);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::invalid_argument);
    EXPECT_NE(r.error().message().find("run_service_options.attempt_timeout"), std::string::npos) << r.error().message();
    EXPECT_FALSE(fs::exists(tmp.path() / "data"));
}

TEST(platform_test, the_workers_relay_an_outbox_event_and_stop) {
    temp_dir tmp;
    auto options = quiet((tmp.path() / "data").string());
    options.workers.outbox = std::chrono::milliseconds(10);
    auto p = must(open_platform(options));
    std::mutex mutex;
    std::condition_variable published;
    std::vector<std::string> seen;
    p->events().subscribe("*", [&](events::event_envelope const& e) -> result<void> {
        std::lock_guard lock(mutex);
        seen.push_back(e.event_type + " " + e.aggregate_id);
        published.notify_all();
        return {};
    });
    auto ctx = request_context::for_tenant("t1");
    auto provider = must(p->registry().register_provider(ctx, provider_spec()));
    auto expected = std::string(events::event_type::provider_registered) + " " + provider.id();
    {
        std::lock_guard lock(mutex);
        EXPECT_TRUE(seen.empty()) << "nothing is relayed before the workers start";
    }

    p->start();
    {
        std::unique_lock lock(mutex);
        ASSERT_TRUE(published.wait_for(lock, std::chrono::seconds(30),
                                       [&] { return std::find(seen.begin(), seen.end(), expected) != seen.end(); }))
            << "the relay the platform started published no " << expected;
    }
    EXPECT_TRUE(p->stop(std::chrono::steady_clock::now() + std::chrono::seconds(30)));

    std::vector<std::string> names;
    for (auto const* w : p->workers()) {
        names.push_back(w->name);
        EXPECT_NE(w->started_ns.load(), 0) << w->name;
        if (w->name == "outbox-relay") {
            EXPECT_GE(w->items_total.load(), 1u);
        }
    }
    EXPECT_EQ(names,
              (std::vector<std::string>{"outbox-relay", "retry", "credential-rotation", "health-probe", "retention"}));
    // Stopped and started again: the same workers continue.
    p->start();
    EXPECT_TRUE(p->stop(std::chrono::steady_clock::now() + std::chrono::seconds(30)));
}

TEST(platform_test, reopening_the_same_data_dir_sees_the_same_records) {
    temp_dir tmp;
    auto dir = (tmp.path() / "data").string();
    auto ctx = request_context::for_tenant("t1");
    std::string provider_id, credential_id;
    {
        auto p = must(open_platform(quiet(dir)));
        provider_id = must(p->registry().register_provider(ctx, provider_spec())).id();
        credential_id =
            must(p->credentials().create(ctx, {.provider_id = provider_id,
                                               .secret = secret_bytes("reopen-s3cr3t"),
                                               .api_key = credentials::api_key_placement{.name = "X-Api-Key"}}))
                .id();
    }
    auto p = must(open_platform(quiet(dir)));
    EXPECT_EQ(find_provider(*p, ctx, provider_id).data().key, "acme");
    // The vault opens with the master key the first platform created.
    auto material = must(p->credentials().resolve(ctx, credential_id));
    ASSERT_EQ(material.headers.size(), 1u);
    EXPECT_EQ(material.headers[0].first, "X-Api-Key");
    EXPECT_TRUE(material.headers[0].second.view() == "reopen-s3cr3t") << "the secret read back differs";
}

TEST(platform_test, two_platforms_on_different_dirs_are_independent) {
    temp_dir tmp;
    auto a = must(open_platform(quiet((tmp.path() / "a").string())));
    auto b = must(open_platform(quiet((tmp.path() / "b").string())));
    auto ctx = request_context::for_tenant("t1");
    auto in_a = must(a->registry().register_provider(ctx, provider_spec("acme")));
    auto in_b = must(b->registry().register_provider(ctx, provider_spec("acme")));  // no key conflict across them
    EXPECT_NE(in_a.id(), in_b.id());
    auto missing =
        storage::read_for(b->store(), ctx, [&](storage::unit_of_work& uow) { return uow.providers().find(in_a.id()); });
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error(), errc::not_found);
}

TEST(platform_test, a_governed_run_executes_through_the_platform) {
    temp_dir tmp;
    loopback_server vendor("HTTP/1.1 200 OK\r\nContent-Length: 16\r\nConnection: close\r\n\r\n{\"id\":\"SM-0001\"}");
    auto options = quiet((tmp.path() / "data").string());
    options.egress.allow.push_back(net::cidr::parse("127.0.0.1/32").value());
    auto p = must(open_platform(options));
    auto ctx = request_context::for_tenant("t1");
    auto spec = provider_spec();
    spec.base_url = "http://127.0.0.1:" + std::to_string(vendor.port());
    auto provider = must(p->registry().register_provider(ctx, spec));
    auto client = must(p->registry().register_client(ctx, provider.id(),
                                                     {.assembly_name = "Acme.Sms",
                                                      .version = "1.0.0",
                                                      .capabilities = {"sms.send"},
                                                      .operations = {{"sms.send", "POST", "/v1/messages"}}}));
    must(p->registry().activate_client(ctx, client.id()));
    must(p->registry().activate_provider(ctx, provider.id()));
    auto key = must(p->credentials().create(ctx, {.provider_id = provider.id(),
                                                  .secret = secret_bytes("run-s3cr3t"),
                                                  .api_key = credentials::api_key_placement{.name = "X-Api-Key"}}));
    auto conn = must(p->connections().create(ctx, provider.id(),
                                             {.project_id = "p1", .display_name = "Acme", .credential_id = key.id()}));
    EXPECT_EQ(must(p->prober().test(ctx, conn.id())).status(), connections::connection_status::active);
    auto out =
        must(p->runs().execute(ctx, {.connection_id = conn.id(), .operation = "sms.send", .input = {.body = "{}"}}));
    EXPECT_EQ(out.run.status(), runs::run_status::completed);
    ASSERT_TRUE(out.response);
    EXPECT_EQ(out.response->status, 200);
    auto requests = vendor.requests();
    ASSERT_EQ(requests.size(), 2u) << "the health check, then the run";
    EXPECT_EQ(requests[1].rfind("POST /v1/messages ", 0), 0u);  // not printed: the request carries the key
    EXPECT_NE(requests[1].find("X-Api-Key: run-s3cr3t"), std::string::npos) << "the credential was applied";
}

// Waits (bounded) until `done` holds, checking every 10 ms.
template <class Predicate>
bool eventually(Predicate done, std::chrono::seconds within = std::chrono::seconds(30)) {
    auto until = std::chrono::steady_clock::now() + within;
    while (!done()) {
        if (std::chrono::steady_clock::now() > until) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
}

TEST(platform_test, an_event_no_handler_accepts_is_parked_as_dead_with_a_failure_and_counted) {
    temp_dir tmp;
    auto options = quiet((tmp.path() / "data").string());
    options.workers.outbox = std::chrono::milliseconds(5);
    options.outbox = {.max_attempts = 4, .retry_base = std::chrono::milliseconds(1), .retry_cap = std::chrono::milliseconds(4)};
    auto p = must(open_platform(options));
    p->events().subscribe(std::string(events::event_type::provider_registered),
                          [](events::event_envelope const&) -> result<void> {
                              return error{errc::unavailable, "the subscriber is down"};
                          });
    auto ctx = request_context::for_tenant("t1");
    auto provider = must(p->registry().register_provider(ctx, provider_spec()));
    p->start();
    ASSERT_TRUE(eventually([&] { return p->outbox_stats().dead == 1; })) << "the poison event was never parked";
    EXPECT_EQ(p->outbox_stats().failed_attempts, 4u);
    // The relay counts the event as dead before the failure that records it commits.
    storage::page<failures::integration_failure> failures;
    ASSERT_TRUE(eventually([&] {
        failures = must(p->failures().list(ctx, {}, {}));
        return !failures.items.empty();
    })) << "no failure was recorded for the poison event";
    ASSERT_EQ(failures.items.size(), 1u);
    EXPECT_EQ(failures.items[0].data().error_code, "publish_failed");
    EXPECT_NE(failures.items[0].data().message.find(provider.id()), std::string::npos) << failures.items[0].data().message;
}

// The relay drains a backlog batch after batch in one sweep; a stop asked meanwhile ends the
// drain after the batch in progress, and the rest waits in the outbox.
TEST(platform_test, a_stop_ends_the_outbox_relays_drain_after_the_batch_in_progress) {
    temp_dir tmp;
    auto options = quiet((tmp.path() / "data").string());
    options.outbox.batch = 1;
    auto p = must(open_platform(options));
    auto ctx = request_context::for_tenant("t1");
    for (auto key : {"acme", "beta", "gamma"}) must(p->registry().register_provider(ctx, provider_spec(key)));
    std::atomic<int> relayed{0};
    p->events().subscribe("*", [&](events::event_envelope const&) -> result<void> {
        ++relayed;
        p->request_stop();
        return {};
    });
    p->start();
    ASSERT_TRUE(eventually([&] { return relayed.load() > 0; })) << "the relay published nothing";
    ASSERT_TRUE(p->stop(std::chrono::steady_clock::now() + std::chrono::seconds(30)));
    EXPECT_EQ(relayed.load(), 1) << "the relay went on draining after the stop";
    EXPECT_EQ(must(p->store().pending_events(10)).size(), 2u);
}

// One event failing in each batch (a listener refusing it) does not end the drain: the relay
// goes on to the next batch rather than wait its interval (ten minutes here) for each one.
TEST(platform_test, an_event_failing_in_a_batch_does_not_hold_the_rest_of_the_backlog_for_an_interval) {
    temp_dir tmp;
    auto options = quiet((tmp.path() / "data").string());
    options.workers.outbox = std::chrono::minutes(10);
    options.outbox.batch = 2;
    auto p = must(open_platform(options));
    auto ctx = request_context::for_tenant("t1");
    std::vector<std::string> ids;
    for (auto key : {"acme", "beta", "gamma", "delta", "epsilon", "zeta"})
        ids.push_back(must(p->registry().register_provider(ctx, provider_spec(key))).id());
    auto const refused = ids.front();
    std::mutex m;
    std::set<std::string> relayed;
    p->events().subscribe("*", [&](events::event_envelope const& e) -> result<void> {
        if (e.aggregate_id == refused) return error{errc::unavailable, "this listener refuses acme"};
        std::lock_guard lock(m);
        relayed.insert(e.aggregate_id);
        return {};
    });
    p->start();
    EXPECT_TRUE(eventually([&] {
        std::lock_guard lock(m);
        return relayed.size() == ids.size() - 1;
    })) << "the relay stopped draining after a batch with a failed event";
    ASSERT_TRUE(p->stop(std::chrono::steady_clock::now() + std::chrono::seconds(30)));
    EXPECT_FALSE(relayed.contains(refused));
}

std::vector<webhooks::webhook_delivery> deliveries_of(platform& p, request_context const& ctx,
                                                      std::string const& subscription_id) {
    return must(p.publisher().list(ctx, {.subscription_id = subscription_id}, {})).items;
}

TEST(platform_test, the_librarys_own_events_fan_out_to_webhook_subscriptions_once_each) {
    temp_dir tmp;
    auto options = quiet((tmp.path() / "data").string());
    options.egress.allow.push_back(net::cidr::parse("127.0.0.0/8").value());
    options.workers.outbox = std::chrono::milliseconds(10);
    options.webhooks.deliver = false;  // only the fan-out is looked at here
    auto p = must(open_platform(options));
    auto ctx = request_context::for_tenant("t1", "alice");
    auto type = std::string(events::event_type::provider_registered);
    auto sub = must(p->subscriptions().subscribe(
        ctx, {.project_id = "p1", .event_type = type, .endpoint_url = "http://127.0.0.1:9/hooks"}));
    std::mutex mutex;
    std::vector<events::event_envelope> relayed;
    p->events().subscribe(type, [&](events::event_envelope const& e) -> result<void> {
        std::lock_guard lock(mutex);
        relayed.push_back(e);
        return {};
    });
    must(p->registry().register_provider(ctx, provider_spec("acme")));
    must(p->registry().register_provider(ctx, provider_spec("beta")));
    // Another tenant's event is not for this tenant's subscription.
    must(p->registry().register_provider(request_context::for_tenant("t2"), provider_spec("acme")));

    p->start();
    ASSERT_TRUE(eventually([&] {
        std::lock_guard lock(mutex);
        return relayed.size() == 3;
    })) << "the relay did not publish the three events";
    ASSERT_TRUE(p->stop(std::chrono::steady_clock::now() + std::chrono::seconds(30)));

    auto listed = deliveries_of(*p, ctx, sub.subscription.id());
    ASSERT_EQ(listed.size(), 2u) << "one delivery per event of the subscription's tenant";
    std::set<std::string> events_delivered;
    for (auto const& d : listed) {
        EXPECT_EQ(d.data().event_type, type);
        EXPECT_EQ(d.status(), webhooks::delivery_status::pending);
        events_delivered.insert(d.data().event_id.value_or(""));
    }
    std::set<std::string> events_of_t1;
    for (auto const& e : relayed)
        if (e.tenant_id == "t1") events_of_t1.insert(e.event_id);
    EXPECT_EQ(events_delivered, events_of_t1);
    EXPECT_EQ(events_of_t1.size(), 2u);

    // The relay publishes again what it could not mark (a crash between the two): no new deliveries.
    // (A copy: publishing calls the handler above, which appends to `relayed`.)
    auto again = relayed;
    for (auto const& e : again) must(p->events().publish(e));
    EXPECT_EQ(deliveries_of(*p, ctx, sub.subscription.id()).size(), 2u);
}

/** Subscribes `ctx`'s tenant to order.* events, sent to `port` on loopback. */
webhooks::subscribed subscribe_loopback(platform& p, request_context const& ctx, std::uint16_t port) {
    return must(p.subscriptions().subscribe(
        ctx, {.project_id = "p1", .event_type = "order.*", .endpoint_url = "http://127.0.0.1:" + std::to_string(port) + "/hooks"}));
}

TEST(platform_test, a_published_event_is_delivered_signed_to_a_loopback_receiver_by_the_running_worker) {
    temp_dir tmp;
    keep_alive_server receiver(
        [](received_request const&) { return std::string("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"); });
    auto options = quiet((tmp.path() / "data").string());
    options.egress.allow.push_back(net::cidr::parse("127.0.0.0/8").value());
    // The worker waits an hour between idle claims: only the publisher's wake-up can make it send in time.
    options.webhooks.delivery.idle_poll = std::chrono::hours(1);
    auto p = must(open_platform(options));
    auto ctx = request_context::for_tenant("t1", "alice");
    auto sub = subscribe_loopback(*p, ctx, receiver.port());
    ASSERT_TRUE(sub.signing_secret);
    p->start();

    for (int i = 1; i <= 2; ++i) {
        auto pub = must(p->publisher().publish(ctx, "order.paid", boost::json::object{{"orderId", i}}));
        ASSERT_EQ(pub.delivery_ids.size(), 1u);
        auto const& id = pub.delivery_ids[0];
        ASSERT_TRUE(eventually([&] { return receiver.requests().size() == static_cast<std::size_t>(i); }))
            << "delivery " << i << " did not reach the receiver";
        ASSERT_TRUE(eventually(
            [&] { return must(p->publisher().find(ctx, id)).status() == webhooks::delivery_status::delivered; }));
        auto got = receiver.requests().back();
        EXPECT_EQ(got.method, "POST");
        EXPECT_EQ(got.target, "/hooks");
        EXPECT_EQ(got.header("webhook-id").value_or(""), id) << "webhook-id is the delivery id";
        auto now =
            std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
        EXPECT_TRUE(webhooks::verify(*sub.signing_secret, id, got.header("webhook-timestamp").value_or(""), got.body,
                                     got.header("webhook-signature").value_or(""), now.count()))
            << "the signature does not verify with the secret subscribe returned";
        EXPECT_NE(got.body.find("\"orderId\":" + std::to_string(i)), std::string::npos) << got.body;
    }
    EXPECT_TRUE(p->stop(std::chrono::steady_clock::now() + std::chrono::seconds(30)))
        << "the delivery worker stops with the others";
    EXPECT_GE(p->delivery_worker().stats().delivered_total.load(), 2u);
}

// What keeps a delivery from going on this side (here its signing secret, gone from the vault)
// reaches the platform's log, which the delivery worker is given.
TEST(platform_test, the_delivery_workers_local_failures_reach_the_platforms_log) {
    temp_dir tmp;
    keep_alive_server receiver(
        [](received_request const&) { return std::string("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"); });
    std::mutex mutex;
    std::vector<std::string> logged;
    auto options = quiet((tmp.path() / "data").string());
    options.egress.allow.push_back(net::cidr::parse("127.0.0.0/8").value());
    options.log = [&](std::string_view level, std::string_view message) {
        std::lock_guard lock(mutex);
        logged.push_back(std::string(level) + ": " + std::string(message));
    };
    auto p = must(open_platform(options));
    auto ctx = request_context::for_tenant("t1", "alice");
    auto sub = subscribe_loopback(*p, ctx, receiver.port());
    auto ref = must(credentials::secret_ref::parse(sub.subscription.data().signing_secret_ref));
    must(p->secrets().soft_delete("t1", ref.name));
    must(p->publisher().publish(ctx, "order.paid", boost::json::object{{"orderId", 1}}));
    must(p->delivery_worker().sweep());
    must(p->delivery_worker().drain());
    EXPECT_TRUE(receiver.requests().empty());
    std::lock_guard lock(mutex);
    ASSERT_EQ(logged.size(), 1u);
    EXPECT_NE(logged[0].find("warning: delivery-worker: delivery "), std::string::npos) << logged[0];
    EXPECT_NE(logged[0].find("its signing secret could not be read from the secret store"), std::string::npos) << logged[0];
}

TEST(platform_test, a_reactivation_and_a_recover_wake_the_running_delivery_worker) {
    temp_dir tmp;
    std::atomic<int> status{500};
    keep_alive_server receiver([&](received_request const&) {
        return "HTTP/1.1 " + std::to_string(status.load()) + " X\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n";
    });
    auto options = quiet((tmp.path() / "data").string());
    options.egress.allow.push_back(net::cidr::parse("127.0.0.0/8").value());
    // The worker waits an hour between idle claims: only a wake-up can make it send in time.
    options.webhooks.delivery.idle_poll = std::chrono::hours(1);
    options.webhooks.delivery.disable_after = 1;
    options.webhooks.delivery.disable_after_failing_for = std::chrono::milliseconds(0);
    auto p = must(open_platform(options));
    auto ctx = request_context::for_tenant("t1", "alice");
    auto sub = must(p->subscriptions().subscribe(
                        ctx, {.project_id = "p1",
                              .event_type = "order.*",
                              .endpoint_url = "http://127.0.0.1:" + std::to_string(receiver.port()) + "/hooks",
                              .attempt_policy = webhooks::subscription_attempt_policy{
                                  .max_attempts = 2, .schedule_ms = std::vector<std::int64_t>{0}}}))
                   .subscription;
    p->start();
    auto delivery = [&](std::string const& id) { return must(p->publisher().find(ctx, id)); };
    auto active = [&] { return must(p->subscriptions().find(ctx, sub.id())).active(); };

    // The first attempt fails (due again at once: its schedule waits 0 ms) and disables the
    // subscription.
    auto id = must(p->publisher().publish(ctx, "order.paid", boost::json::object{{"orderId", 1}})).delivery_ids.at(0);
    ASSERT_TRUE(eventually([&] { return delivery(id).status() == webhooks::delivery_status::failed && !active(); }));
    // The reactivation makes it claimable: the second (last) attempt fails, it is dead-lettered.
    must(p->subscriptions().reactivate(ctx, sub.id()));
    ASSERT_TRUE(eventually([&] { return delivery(id).status() == webhooks::delivery_status::dead_lettered; }))
        << "the delivery waited for the next idle claim: reactivate did not wake the worker";
    ASSERT_TRUE(eventually([&] { return !active(); }));

    status = 204;
    must(p->subscriptions().reactivate(ctx, sub.id()));
    ASSERT_EQ(must(p->subscriptions().recover(ctx, sub.id(), std::chrono::system_clock::now() - std::chrono::hours(1)))
                  .size(),
              1u);
    EXPECT_TRUE(eventually([&] { return delivery(id).status() == webhooks::delivery_status::delivered; }))
        << "the recovered delivery waited for the next idle claim: recover did not wake the worker";
    EXPECT_EQ(receiver.requests().size(), 3u);
    EXPECT_TRUE(p->stop(std::chrono::steady_clock::now() + std::chrono::seconds(30)));
}

}  // namespace
}  // namespace integration::testing
