// The RAII transaction and savepoint of the SQLite wrapper, on a real database file.
#include "detail/sqlite/connection.hpp"

#include "storage/fixtures.hpp"

#include <stdexcept>

namespace integration::testing {
namespace {

using storage::sqlite::database;
using storage::sqlite::savepoint;
using storage::sqlite::transaction;

class sqlite_transaction : public ::testing::Test {
protected:
    void SetUp() override { must(db_->exec("CREATE TABLE t (v TEXT NOT NULL)")); }

    /** The rows as another connection sees them: what reached the file. */
    std::vector<std::string> committed() {
        auto other = must(database::open(dir_.file("t.db"), true, 1'000));
        auto st = must(other->prepare("SELECT v FROM t ORDER BY rowid"));
        std::vector<std::string> out;
        while (must(st->step())) out.push_back(st->text(0));
        st->reset();
        return out;
    }
    result<void> insert(std::string v) {
        auto st = db_->prepare("INSERT INTO t (v) VALUES (?)");
        if (!st) return st.error();
        (*st)->bind(1, storage::sqlite::value{std::move(v)});
        return (*st)->run();
    }

    temp_dir dir_;
    std::unique_ptr<database> db_ = must(database::open(dir_.file("t.db"), false, 1'000));
};

TEST_F(sqlite_transaction, an_early_return_leaves_no_partial_write) {
    auto write_two = [&](bool give_up) -> result<void> {
        auto tx = transaction::begin(*db_);
        if (!tx) return tx.error();
        if (auto r = insert("first"); !r) return r;
        if (give_up) return error{errc::invalid_argument, "gave up between the writes"};
        if (auto r = insert("second"); !r) return r;
        return tx->commit();
    };
    EXPECT_FALSE(write_two(true));
    EXPECT_FALSE(db_->in_transaction());
    EXPECT_TRUE(committed().empty());
    must(write_two(false));
    EXPECT_EQ(committed(), (std::vector<std::string>{"first", "second"}));
}

TEST_F(sqlite_transaction, a_throwing_path_leaves_no_partial_write) {
    EXPECT_THROW(
        {
            auto tx = must(transaction::begin(*db_));
            must(insert("first"));
            throw std::runtime_error("thrown between the writes");
        },
        std::runtime_error);
    EXPECT_FALSE(db_->in_transaction());
    EXPECT_TRUE(committed().empty());
    // The connection is usable afterwards: the next transaction commits.
    auto tx = must(transaction::begin(*db_));
    must(insert("after"));
    must(tx.commit());
    EXPECT_EQ(committed(), std::vector<std::string>{"after"});
    EXPECT_FALSE(tx.commit());  // a second commit is refused, not sent
}

TEST_F(sqlite_transaction, nested_savepoints_roll_back_alone) {
    auto tx = must(transaction::begin(*db_));
    must(insert("outer-before"));
    {
        auto outer = must(savepoint::begin(*db_, "outer"));
        must(insert("kept"));
        {
            auto inner = must(savepoint::begin(*db_, "inner"));
            must(insert("inner-dropped"));
        }  // not released: only the inner savepoint's write is undone
        must(outer.release());
    }
    {
        auto same_name_twice = must(savepoint::begin(*db_, "unit"));
        must(insert("unit-kept"));
        {
            auto nested = must(savepoint::begin(*db_, "unit"));
            must(insert("unit-dropped"));
        }
        must(same_name_twice.release());
    }
    {
        auto dropped = must(savepoint::begin(*db_));
        must(insert("dropped"));
    }
    EXPECT_TRUE(db_->in_transaction());
    must(tx.commit());
    EXPECT_EQ(committed(), (std::vector<std::string>{"outer-before", "kept", "unit-kept"}));
}

TEST_F(sqlite_transaction, a_transaction_the_engine_already_ended_is_not_rolled_back_twice) {
    auto tx = must(transaction::begin(*db_));
    must(insert("gone"));
    must(db_->exec("ROLLBACK"));  // as the engine does after an I/O error
    EXPECT_FALSE(db_->in_transaction());
    EXPECT_FALSE(tx.commit());
    // Work after it is untouched by `tx` ending.
    must(insert("autocommitted"));
    EXPECT_EQ(committed(), std::vector<std::string>{"autocommitted"});
}

}  // namespace
}  // namespace integration::testing
