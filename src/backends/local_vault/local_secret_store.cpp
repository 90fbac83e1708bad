#include <integration/backends/local_vault/local_secret_store.hpp>

#include "../../detail/crypto.hpp"
#include "../../detail/sqlite/connection.hpp"

#include <integration/core/context.hpp>
#include <integration/core/id.hpp>
#include <integration/core/time.hpp>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>

namespace integration::credentials {
namespace {

using storage::sqlite::database;
using storage::sqlite::value;
using blob = std::vector<unsigned char>;

constexpr char const* schema = R"sql(
CREATE TABLE IF NOT EXISTS secrets(tenant TEXT NOT NULL, name TEXT NOT NULL, deleted_at INTEGER,
  PRIMARY KEY(tenant, name));
CREATE TABLE IF NOT EXISTS secret_versions(tenant TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
  enabled INTEGER NOT NULL, created_at INTEGER NOT NULL, key_id TEXT NOT NULL, wrapped_key BLOB NOT NULL,
  sealed BLOB NOT NULL, PRIMARY KEY(tenant, name, version),
  FOREIGN KEY(tenant, name) REFERENCES secrets(tenant, name) ON DELETE CASCADE);
CREATE INDEX IF NOT EXISTS secret_versions_by_key ON secret_versions(key_id);
)sql";

// What each seal authenticates: a record moved to another tenant, name, version or key id fails.
std::string payload_aad(std::string const& tenant, std::string const& name, std::int64_t version) {
    return "integration-secret-v1|" + tenant + "|" + name + "|" + std::to_string(version);
}
std::string key_aad(std::string const& tenant, std::string const& name, std::int64_t version, std::string const& key_id) {
    return "integration-dek-v1|" + tenant + "|" + name + "|" + std::to_string(version) + "|" + key_id;
}

/** Master keys by id; the first is current. */
struct keyring {
    std::vector<std::pair<std::string, secret_bytes>> keys;

    secret_bytes const* find(std::string const& id) const {
        for (auto const& [k, v] : keys)
            if (k == id) return &v;
        return nullptr;
    }
    /** The key file's text, in memory that is wiped when it goes. */
    secret_bytes serialize() const {
        std::size_t size = 0;
        for (auto const& [id, key] : keys) size += id.size() + 2 + 2 * key.size();
        auto text = secret_bytes::zeroed(size);
        auto* at = reinterpret_cast<char*>(text.data());
        for (auto const& [id, key] : keys) {
            auto hex = crypto::to_hex(key.data(), key.size());
            at = std::copy(id.begin(), id.end(), at);
            *at++ = ' ';
            at = std::copy(hex.begin(), hex.end(), at);
            *at++ = '\n';
            crypto::wipe(hex);
        }
        return text;
    }
    static result<keyring> parse(secret_bytes const& text, std::string const& source) {
        keyring ring;
        auto v = text.view();
        while (!v.empty()) {
            auto nl = v.find('\n');
            auto line = v.substr(0, nl);
            v = nl == std::string_view::npos ? std::string_view{} : v.substr(nl + 1);
            if (line.empty()) continue;
            auto sp = line.find(' ');
            auto key = sp == std::string_view::npos ? result<secret_bytes>(error{errc::invalid_argument, ""})
                                                    : crypto::from_hex(line.substr(sp + 1));
            if (!key || key->size() != crypto::key_size)
                return error{errc::secret_store_failure, source + " is malformed: each line must be '<key id> <64 hex digits>'"};
            ring.keys.emplace_back(std::string(line.substr(0, sp)), std::move(*key));
        }
        if (ring.keys.empty()) return error{errc::secret_store_failure, source + " holds no master key"};
        return ring;
    }
};

class local_store final : public local_secret_store {
public:
    local_store(local_secret_store_options o, std::unique_ptr<database> db, keyring ring, bool from_env)
        : o_(std::move(o)), clock_(o_.clock ? *o_.clock : system_clock::instance()), db_(std::move(db)),
          ring_(std::move(ring)), from_env_(from_env) {}

    std::string const& name() const noexcept override { return o_.store_name; }

    std::string current_key_id() const override {
        std::lock_guard lock(mutex_);
        return ring_.keys.front().first;
    }

    result<secret_ref> put(std::string const& tenant, std::string const& name, secret_bytes const& value) override {
        if (auto r = check_names(tenant, name); !r) return r.error();
        if (value.empty()) return error{errc::invalid_argument, "a secret value must not be empty"};
        std::lock_guard lock(mutex_);
        auto deleted = deleted_at(tenant, name);
        if (!deleted) return deleted.error();
        if (*deleted) return error{errc::invalid_state, "secret " + name + " is soft-deleted; recover or purge it first"};
        auto tx = storage::sqlite::transaction::begin(*db_);
        if (!tx) return wrap(tx.error());
        auto ins = exec("INSERT INTO secrets (tenant, name) VALUES (?, ?) ON CONFLICT DO NOTHING", {tenant, name});
        if (!ins) return wrap(ins.error());
        auto next = scalar("SELECT COALESCE(MAX(version), 0) + 1 FROM secret_versions WHERE tenant = ? AND name = ?",
                           {tenant, name});
        if (!next) return wrap(next.error());
        // Sealed under the key file's current key, read inside this write transaction: another
        // process's rotation writes the file only inside one too, so it cannot drop this key
        // between the read and the commit.
        if (auto r = reload_ring(); !r) return r.error();
        auto const& [key_id, master] = ring_.keys.front();
        auto dek = crypto::random_key();
        auto sealed = crypto::seal(dek, value.data(), value.size(), payload_aad(tenant, name, *next));
        auto wrapped = crypto::seal(master, dek.data(), dek.size(), key_aad(tenant, name, *next, key_id));
        auto r = exec("INSERT INTO secret_versions (tenant, name, version, enabled, created_at, key_id, wrapped_key, sealed) "
                      "VALUES (?, ?, ?, 1, ?, ?, ?, ?)",
                      {tenant, name, *next, to_unix_ms(clock_.now()), key_id, std::move(wrapped), std::move(sealed)});
        if (!r) return wrap(r.error());
        if (auto c = tx->commit(); !c) return wrap(c.error());
        return secret_ref{o_.store_name, tenant, name, *next};
    }

    result<secret_bytes> get(std::string const& tenant, secret_ref const& ref) override {
        if (auto r = check_ref(tenant, ref); !r) return r.error();
        std::lock_guard lock(mutex_);
        auto deleted = deleted_at(tenant, ref.name);
        if (!deleted) return deleted.error();
        if (*deleted) return error{errc::not_found, "secret " + ref.name + " is soft-deleted; recover it first"};
        auto st = db_->prepare(ref.version > 0
                                   ? "SELECT version, enabled, key_id, wrapped_key, sealed FROM secret_versions "
                                     "WHERE tenant = ? AND name = ? AND version = ?"
                                   : "SELECT version, enabled, key_id, wrapped_key, sealed FROM secret_versions "
                                     "WHERE tenant = ? AND name = ? AND enabled = 1 ORDER BY version DESC LIMIT 1");
        if (!st) return wrap(st.error());
        (*st)->bind(1, value{tenant});
        (*st)->bind(2, value{ref.name});
        if (ref.version > 0) (*st)->bind(3, value{ref.version});
        auto row = (*st)->step();
        if (!row) return wrap(row.error());
        if (!*row) return error{errc::not_found, "secret " + ref.uri() + " does not exist"};
        auto version = (*st)->int64(0);
        bool enabled = (*st)->int64(1) != 0;
        auto key_id = (*st)->text(2);
        auto wrapped = (*st)->blob(3);
        auto sealed = (*st)->blob(4);
        (*st)->reset();
        if (!enabled) return error{errc::invalid_state, "version " + std::to_string(version) + " of secret " + ref.name + " is disabled"};
        auto master = known_key(key_id);
        if (!master) return master.error();
        if (!*master)
            return error{errc::integrity_failure, "secret " + ref.name + " is sealed under master key " + key_id +
                                                      ", which this store does not hold; restore the key file that has it"};
        auto dek = crypto::open(**master, wrapped, key_aad(tenant, ref.name, version, key_id));
        if (!dek) return dek.error();
        return crypto::open(*dek, sealed, payload_aad(tenant, ref.name, version));
    }

    result<std::vector<secret_version_info>> versions(std::string const& tenant, std::string const& name) override {
        if (auto r = check_names(tenant, name); !r) return r.error();
        std::lock_guard lock(mutex_);
        auto st = db_->prepare("SELECT version, enabled, created_at FROM secret_versions WHERE tenant = ? AND name = ? ORDER BY version");
        if (!st) return wrap(st.error());
        (*st)->bind_all({tenant, name});
        std::vector<secret_version_info> out;
        while (true) {
            auto row = (*st)->step();
            if (!row) return wrap(row.error());
            if (!*row) break;
            out.push_back({(*st)->int64(0), (*st)->int64(1) != 0, from_unix_ms((*st)->int64(2))});
        }
        (*st)->reset();
        if (out.empty()) return error{errc::not_found, "secret " + name + " does not exist"};
        return out;
    }

    result<void> disable(std::string const& tenant, secret_ref const& ref) override {
        if (auto r = check_ref(tenant, ref); !r) return r;
        if (ref.version <= 0) return error{errc::invalid_argument, "disable needs a specific version"};
        std::lock_guard lock(mutex_);
        auto r = exec("UPDATE secret_versions SET enabled = 0 WHERE tenant = ? AND name = ? AND version = ?",
                      {tenant, ref.name, ref.version});
        if (!r) return wrap(r.error());
        if (db_->changes() == 0) return error{errc::not_found, "secret " + ref.uri() + " does not exist"};
        return {};
    }

    result<void> soft_delete(std::string const& tenant, std::string const& name) override {
        return set_deleted(tenant, name, true);
    }
    result<void> recover(std::string const& tenant, std::string const& name) override {
        return set_deleted(tenant, name, false);
    }

    result<void> purge(std::string const& tenant, std::string const& name) override {
        if (auto r = check_names(tenant, name); !r) return r;
        std::lock_guard lock(mutex_);
        auto deleted = deleted_at(tenant, name);
        if (!deleted) return deleted.error();
        if (!*deleted) return error{errc::invalid_state, "secret " + name + " must be soft-deleted before it is purged"};
        auto until = from_unix_ms(**deleted) + o_.retention;
        if (o_.purge_protection && clock_.now() < until)
            return error{errc::forbidden, "purge protection keeps secret " + name + " recoverable until " + format_time(until)};
        auto r = exec("DELETE FROM secrets WHERE tenant = ? AND name = ?", {tenant, name});
        if (!r) return wrap(r.error());
        // secure_delete zeroed the rows in the database's pages; the WAL still holds the frames
        // that wrote them until it is copied back and emptied. (A reader in another process may
        // hold it: then the frames go at a later purge or checkpoint.)
        (void)db_->exec("PRAGMA wal_checkpoint(TRUNCATE)");
        return {};
    }

    result<std::size_t> purge_expired() override {
        std::lock_guard lock(mutex_);
        // Purge protection only guards this window, which has ended for every row taken here.
        auto cutoff = to_unix_ms(clock_.now() - o_.retention);
        if (auto r = exec("DELETE FROM secrets WHERE deleted_at IS NOT NULL AND deleted_at <= ?", {cutoff}); !r)
            return wrap(r.error());
        auto n = static_cast<std::size_t>(db_->changes());
        // Disabled versions (rotated out, or never verified) made before the window go too; a
        // secret's newest version stays, so that no later `put` gives its number to other bytes.
        if (auto r = exec("DELETE FROM secret_versions WHERE enabled = 0 AND created_at <= ? AND version < "
                          "(SELECT MAX(version) FROM secret_versions n WHERE n.tenant = secret_versions.tenant "
                          "AND n.name = secret_versions.name)",
                          {cutoff});
            !r)
            return wrap(r.error());
        n += static_cast<std::size_t>(db_->changes());
        if (n > 0) (void)db_->exec("PRAGMA wal_checkpoint(TRUNCATE)");  // as `purge`: no frame keeps the bytes
        return n;
    }

    result<std::size_t> rotate_master_key() override {
        if (from_env_)
            return error{errc::invalid_state, "the master key comes from " + o_.key_env +
                                                  "; rotate by switching to a key file, or change the variable and re-seal"};
        // The key file is written only inside a write transaction of the store: processes on the
        // same files take turns, and none seals a record under a key a rotation is dropping.
        {
            std::lock_guard lock(mutex_);
            auto tx = storage::sqlite::transaction::begin(*db_);
            if (!tx) return wrap(tx.error());
            if (auto r = reload_ring(); !r) return r.error();
            keyring next;
            next.keys.emplace_back(new_id_for_key(), crypto::random_key());
            for (auto const& [id, k] : ring_.keys) next.keys.emplace_back(id, k.clone());
            // The file gains the new key before any record uses it, so a crash never strands a record.
            if (auto w = crypto::write_private_file(o_.key_file, next.serialize().view()); !w) return w.error();
            ring_ = std::move(next);
            if (auto c = tx->commit(); !c) return wrap(c.error());
        }
        std::size_t resealed = 0;
        std::string walked_for;   // the key the walk re-seals under
        std::int64_t after = 0;   // the walk's last row: records sealed since are under the current key
        bool checked = false;     // the walk ended and one look over every row follows
        while (true) {
            // Small batches under the lock: reads and writes go on between them. Each reseals
            // under the file's current key, which is another process's if it rotated since (the
            // walk then starts over).
            std::lock_guard lock(mutex_);
            auto tx = storage::sqlite::transaction::begin(*db_);
            if (!tx) return wrap(tx.error());
            if (auto r = reload_ring(); !r) return r.error();
            auto const current = ring_.keys.front().first;
            if (current != walked_for) {
                walked_for = current;
                after = 0;
                checked = false;
            }
            auto st = db_->prepare("SELECT tenant, name, version, key_id, wrapped_key, rowid FROM secret_versions "
                                   "WHERE rowid > ? AND key_id <> ? ORDER BY rowid LIMIT 64");
            if (!st) return wrap(st.error());
            (*st)->bind(1, value{checked ? std::int64_t{0} : after});
            (*st)->bind(2, value{current});
            struct row { std::string tenant, name; std::int64_t version; std::string key_id; blob wrapped; };
            std::vector<row> rows;
            while (true) {
                auto more = (*st)->step();
                if (!more) return wrap(more.error());
                if (!*more) break;
                rows.push_back({(*st)->text(0), (*st)->text(1), (*st)->int64(2), (*st)->text(3), (*st)->blob(4)});
                after = (*st)->int64(5);
            }
            (*st)->reset();
            if (rows.empty() && !checked) {
                checked = true;  // the walk ended: one more look, over every row
                continue;
            }
            if (rows.empty()) {
                // Every record is under the current key: the others leave the file.
                keyring only;
                only.keys.emplace_back(current, ring_.keys.front().second.clone());
                if (auto w = crypto::write_private_file(o_.key_file, only.serialize().view()); !w) return w.error();
                ring_ = std::move(only);
                if (auto c = tx->commit(); !c) return wrap(c.error());
                return resealed;
            }
            checked = false;
            for (auto& r : rows) {
                auto const* old_key = ring_.find(r.key_id);
                if (!old_key) return error{errc::integrity_failure, "a record is sealed under unknown master key " + r.key_id};
                auto dek = crypto::open(*old_key, r.wrapped, key_aad(r.tenant, r.name, r.version, r.key_id));
                if (!dek) return dek.error();
                auto rewrapped = crypto::seal(ring_.keys.front().second, dek->data(), dek->size(),
                                              key_aad(r.tenant, r.name, r.version, current));
                auto u = exec("UPDATE secret_versions SET key_id = ?, wrapped_key = ? WHERE tenant = ? AND name = ? AND version = ?",
                              {current, std::move(rewrapped), r.tenant, r.name, r.version});
                if (!u) return wrap(u.error());
            }
            if (auto c = tx->commit(); !c) return wrap(c.error());
            resealed += rows.size();
        }
    }

    result<void> verify_master_key() override {
        std::lock_guard lock(mutex_);
        auto st = db_->prepare(
            "SELECT tenant, name, version, key_id, wrapped_key FROM secret_versions ORDER BY rowid DESC LIMIT 1");
        if (!st) return wrap(st.error());
        auto row = (*st)->step();
        if (!row) return wrap(row.error());
        if (!*row) return {};
        auto tenant = (*st)->text(0), name = (*st)->text(1), key_id = (*st)->text(3);
        auto version = (*st)->int64(2);
        auto wrapped = (*st)->blob(4);
        (*st)->reset();
        auto master = known_key(key_id);
        if (!master) return master.error();
        if (!*master || !crypto::open(**master, wrapped, key_aad(tenant, name, version, key_id)))
            return error{errc::integrity_failure, "the master key (" + key_source() +
                                                      ") does not open the records in " + o_.path +
                                                      ", which are sealed under key " + key_id +
                                                      "; restore the key file they were sealed under"};
        return {};
    }

private:
    std::string new_id_for_key() const { return new_id("mk", clock_.now()); }

    // The key file as it is now (another process on the same files may have rotated the key):
    // its first key seals from now on. Keys this process holds that the file lacks (an older
    // copy of the file restored meanwhile) are kept after the file's, to open and re-seal what
    // they sealed; a rotation writes them back. Under mutex_.
    result<void> reload_ring() {
        if (from_env_) return {};
        auto text = crypto::read_private_file(o_.key_file);
        if (!text)
            return error{errc::secret_store_failure, "the master key file cannot be read: " + text.error().detail()};
        auto ring = keyring::parse(*text, o_.key_file);
        if (!ring) return ring.error();
        for (auto& [id, key] : ring_.keys)
            if (!ring->find(id)) ring->keys.emplace_back(id, std::move(key));
        ring_ = std::move(*ring);
        return {};
    }

    // The master key `id`, looked up again in the key file when this process does not hold it
    // (a record another process sealed after it rotated); null when neither has it. Under mutex_.
    result<secret_bytes const*> known_key(std::string const& id) {
        if (auto const* k = ring_.find(id)) return k;
        if (auto r = reload_ring(); !r) return r.error();
        return ring_.find(id);
    }
    std::string key_source() const { return from_env_ ? o_.key_env : o_.key_file; }

    result<void> check_names(std::string const& tenant, std::string const& name) const {
        if (auto r = validate_tenant_id(tenant); !r) return r;
        return validate_secret_name(name);
    }

    result<void> check_ref(std::string const& tenant, secret_ref const& ref) const {
        if (auto r = check_names(tenant, ref.name); !r) return r;
        if (ref.tenant != tenant || ref.store != o_.store_name)
            return error{errc::not_found, "secret " + ref.name + " does not exist in this tenant's store"};
        return {};
    }

    result<void> set_deleted(std::string const& tenant, std::string const& name, bool deleted) {
        if (auto r = check_names(tenant, name); !r) return r;
        std::lock_guard lock(mutex_);
        auto r = deleted ? exec("UPDATE secrets SET deleted_at = ? WHERE tenant = ? AND name = ? AND deleted_at IS NULL",
                                {to_unix_ms(clock_.now()), tenant, name})
                         : exec("UPDATE secrets SET deleted_at = NULL WHERE tenant = ? AND name = ? AND deleted_at IS NOT NULL",
                                {tenant, name});
        if (!r) return wrap(r.error());
        if (db_->changes() == 0)
            return error{errc::not_found, "secret " + name + (deleted ? " does not exist or is already deleted" : " is not deleted")};
        return {};
    }

    result<std::optional<std::int64_t>> deleted_at(std::string const& tenant, std::string const& name) {
        auto st = db_->prepare("SELECT deleted_at FROM secrets WHERE tenant = ? AND name = ?");
        if (!st) return wrap(st.error());
        (*st)->bind_all({tenant, name});
        auto row = (*st)->step();
        if (!row) return wrap(row.error());
        std::optional<std::int64_t> at;
        if (*row && !(*st)->is_null(0)) at = (*st)->int64(0);
        (*st)->reset();
        return at;
    }

    result<void> exec(std::string const& sql, std::vector<value> binds) {
        auto st = db_->prepare(sql);
        if (!st) return st.error();
        (*st)->bind_all(binds);
        return (*st)->run();
    }

    result<std::int64_t> scalar(std::string const& sql, std::vector<value> binds) {
        auto st = db_->prepare(sql);
        if (!st) return st.error();
        (*st)->bind_all(binds);
        auto row = (*st)->step();
        if (!row) return row.error();
        auto v = (*st)->int64(0);
        (*st)->reset();
        return v;
    }

    // Engine errors become secret-store errors; the caller's state is unchanged.
    static error wrap(error e) {
        if (e == errc::storage_busy || e == errc::storage_failure)
            return {errc::secret_store_failure, "secret store: " + e.detail()};
        return e;
    }

    local_secret_store_options o_;
    clock const& clock_;
    mutable std::mutex mutex_;
    std::unique_ptr<database> db_;
    keyring ring_;
    bool from_env_;
};

// The master key: from the environment, else the key file, which is created (under the store's
// write lock, so that two processes opening a new store at once do not each write their own and
// strand what the other seals) only while the store holds no record.
result<keyring> load_keyring(local_secret_store_options const& o, bool& from_env, clock const& clk, database& db) {
    if (char const* env = o.key_env.empty() ? nullptr : std::getenv(o.key_env.c_str()); env && *env) {
        from_env = true;
        auto key = crypto::from_hex(env);
        if (!key || key->size() != crypto::key_size)
            return error{errc::invalid_argument, o.key_env + " must hold 64 hex digits (a 256-bit key)"};
        keyring ring;
        ring.keys.emplace_back("env", std::move(*key));
        return ring;
    }
    from_env = false;
    if (o.key_file.empty())
        return error{errc::invalid_argument, "local_secret_store_options.key_file (or " + o.key_env + ") is required"};
    auto text = crypto::read_private_file(o.key_file);
    if (text) return keyring::parse(*text, o.key_file);
    if (text.error() != errc::not_found) return text.error();
    auto tx = storage::sqlite::transaction::begin(db);
    if (!tx) return error{errc::secret_store_failure, "secret store: " + tx.error().detail()};
    text = crypto::read_private_file(o.key_file);  // another process may have made it meanwhile
    if (text) return keyring::parse(*text, o.key_file);
    if (text.error() != errc::not_found) return text.error();
    auto count = db.prepare("SELECT count(*) FROM secret_versions");
    if (!count) return error{errc::secret_store_failure, "secret store: " + count.error().detail()};
    auto row = (*count)->step();
    if (!row) return error{errc::secret_store_failure, "secret store: " + row.error().detail()};
    auto sealed = (*count)->int64(0);
    (*count)->reset();
    // A new key would open none of the records, and each secret would fail only when read.
    if (sealed > 0)
        return error{errc::secret_store_failure, "the master key file " + o.key_file + " is missing, but " + o.path +
                                                     " holds " + std::to_string(sealed) +
                                                     " secret versions sealed under it; restore it from a backup "
                                                     "(a new key cannot open them)"};
    keyring ring;
    ring.keys.emplace_back(new_id("mk", clk.now()), crypto::random_key());
    if (auto w = crypto::write_private_file(o.key_file, ring.serialize().view()); !w) return w.error();
    if (auto c = tx->commit(); !c) return error{errc::secret_store_failure, "secret store: " + c.error().detail()};
    return ring;
}

}  // namespace

result<std::unique_ptr<local_secret_store>> open_local_secret_store(local_secret_store_options o) {
    if (o.path.empty()) return error{errc::invalid_argument, "local_secret_store_options.path is required"};
    auto& clk = o.clock ? *o.clock : system_clock::instance();
    auto db = database::open(o.path, false, 5000);
    if (!db) return error{errc::secret_store_failure, "cannot open secret store: " + db.error().detail()};
    auto setup = [&]() -> result<void> {
        // secure_delete: a purged or re-sealed record's bytes are overwritten, not left in free pages.
        for (auto sql : {"PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL", "PRAGMA foreign_keys = ON",
                         "PRAGMA secure_delete = ON", schema})
            if (auto r = (*db)->exec(sql); !r) return r.error();
        return {};
    };
    // Two processes opening a new file at once can meet while one switches it to WAL; SQLite then
    // answers busy at once instead of waiting (a wait could deadlock them): try again shortly.
    auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
        auto r = setup();
        if (r) break;
        if (r.error() != errc::storage_busy || std::chrono::steady_clock::now() >= give_up)
            return error{errc::secret_store_failure, "secret store: " + r.error().detail()};
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    bool from_env = false;
    auto ring = load_keyring(o, from_env, clk, **db);
    if (!ring) return ring.error();
    return std::unique_ptr<local_secret_store>(new local_store(std::move(o), std::move(*db), std::move(*ring), from_env));
}

}  // namespace integration::credentials
