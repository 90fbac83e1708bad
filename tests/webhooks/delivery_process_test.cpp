// The delivery worker across processes: two workers on one SQLite file, and a worker killed
// between the receiver's answer and its commit (tests/webhooks/probe/delivery_probe.cpp).
#include <integration/services/delivery_worker.hpp>

#include "support/keep_alive_server.hpp"
#include "webhooks/delivery_world.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace integration::testing {
namespace {

using namespace std::chrono_literals;
using webhooks::delivery_status;

pid_t start_probe(std::vector<std::string> args) {
    args.insert(args.begin(), INTEGRATION_DELIVERY_PROBE);
    pid_t pid = ::fork();
    if (pid == 0) {
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    return pid;
}

/** Waits (bounded) for `pid`; its wait status, or -1 when it had to be killed. */
int wait_probe(pid_t pid) {
    int status = 0;
    for (int i = 0; i < 18'000; ++i) {
        if (::waitpid(pid, &status, WNOHANG) == pid) return status;
        std::this_thread::sleep_for(10ms);
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    return -1;
}

std::string url_of(keep_alive_server const& s) {
    return "http://127.0.0.1:" + std::to_string(s.port()) + "/hook";
}

TEST(delivery_process, a_worker_killed_after_the_answer_and_before_the_commit_sends_again_and_records_once) {
    temp_dir dir;
    delivery_world w(dir);
    keep_alive_server receiver([](received_request const&) { return http_answer_bytes(200, "{}"); });
    auto sub = w.subscribe(url_of(receiver));
    auto id = w.deliver(sub);

    auto killed = wait_probe(start_probe({dir.path().string(), "--kill-after-answer"}));
    ASSERT_TRUE(WIFSIGNALED(killed)) << killed;
    EXPECT_EQ(WTERMSIG(killed), SIGKILL);
    ASSERT_EQ(receiver.requests().size(), 1u);
    auto d = w.delivery(id);
    EXPECT_EQ(d.data().attempts, 0);  // the answer was never recorded
    EXPECT_NE(d.status(), delivery_status::delivered);

    // A restarted worker, once the dead one's lease has expired, sends it again with the same id.
    auto restarted = wait_probe(start_probe({dir.path().string(), "--clock-offset-ms", "600000"}));
    ASSERT_TRUE(WIFEXITED(restarted) && WEXITSTATUS(restarted) == 0) << restarted;
    auto seen = receiver.requests();
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_EQ(seen[0].header("webhook-id"), id);
    EXPECT_EQ(seen[1].header("webhook-id"), id);
    d = w.delivery(id);
    EXPECT_EQ(d.status(), delivery_status::delivered);
    EXPECT_EQ(d.data().attempts, 1);
    EXPECT_EQ(d.data().delivery_attempts.size(), 1u);
}

TEST(delivery_process, two_worker_processes_on_one_store_send_each_delivery_once_and_never_concurrently) {
    temp_dir dir;
    delivery_world w(dir);
    std::mutex mutex;
    std::map<std::string, int> in_flight, received;
    int overlaps = 0;
    keep_alive_server receiver([&](received_request const& r) {
        auto id = r.header("webhook-id").value_or("");
        {
            std::lock_guard lock(mutex);
            if (++in_flight[id] > 1) ++overlaps;
            ++received[id];
        }
        std::this_thread::sleep_for(200us);  // widens the window a second send of the id would hit
        {
            std::lock_guard lock(mutex);
            --in_flight[id];
        }
        return http_answer_bytes(200, "{}");
    });
    std::vector<std::string> ids;
    for (int s = 0; s < 10; ++s) {
        auto sub = w.subscribe(url_of(receiver));
        auto more = w.deliver_many(sub, 1000);
        ids.insert(ids.end(), more.begin(), more.end());
    }
    auto a = start_probe({dir.path().string()});
    auto b = start_probe({dir.path().string()});
    auto sa = wait_probe(a), sb = wait_probe(b);
    ASSERT_TRUE(WIFEXITED(sa) && WEXITSTATUS(sa) == 0) << sa;
    ASSERT_TRUE(WIFEXITED(sb) && WEXITSTATUS(sb) == 0) << sb;

    std::lock_guard lock(mutex);
    EXPECT_EQ(overlaps, 0);
    EXPECT_EQ(received.size(), ids.size());
    std::size_t twice = 0;
    for (auto const& [id, n] : received) twice += n > 1 ? 1 : 0;
    EXPECT_EQ(twice, 0u);
    std::size_t delivered = 0;
    storage::page_request page{.limit = 500};
    for (;;) {
        auto got = must(storage::read_for(*w.store, w.ctx, [&](storage::unit_of_work& uow) {
            return uow.deliveries().list({.status = delivery_status::delivered}, page);
        }));
        for (auto const& d : got.items) delivered += d.data().attempts == 1 ? 1 : 0;
        if (got.next_cursor.empty()) break;
        page.cursor = got.next_cursor;
    }
    EXPECT_EQ(delivered, ids.size());
}

}  // namespace
}  // namespace integration::testing
