// Outbound webhooks through the real integration-host: subscriptions, publishing, deliveries
// verified by a receiver written with the standardwebhooks npm library, replay, recover,
// deactivation, rotation, tenant isolation, SSRF refusals of endpointUrl and bad input.

#include "host/api_steps.hpp"
#include "host/host_process.hpp"
#include "support/child_process.hpp"
#include "support/keep_alive_server.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace integration::testing {
namespace {

namespace json = boost::json;

/** Waits (bounded) until `done` holds. */
bool eventually(std::function<bool()> const& done, std::chrono::seconds within = std::chrono::seconds(30)) {
    auto until = std::chrono::steady_clock::now() + within;
    while (!done()) {
        if (std::chrono::steady_clock::now() > until) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
}

double metric(std::string const& text, std::string const& series) {
    auto at = text.find("\n" + series + " ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + 1 + series.size() + 1));
}

/** tests/peers/webhook_receiver.mjs: verifies each delivery with `standardwebhooks`, using the
 *  secret written under the first segment of the path it was sent to. */
class receiver {
public:
    explicit receiver(std::filesystem::path secrets) : secrets_(std::move(secrets)) {
        std::filesystem::create_directories(secrets_);
        auto line = node_.read_line();
        if (line.rfind("PORT ", 0) != 0) throw std::runtime_error("the webhook receiver said: " + line);
        port_ = static_cast<std::uint16_t>(std::stoi(line.substr(5)));
    }
    std::uint16_t port() const { return port_; }
    std::string url(std::string const& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
    void secret(std::string const& name, std::string const& whsec) const { std::ofstream(secrets_ / name) << whsec; }
    /** What arrived: `[{path, id, verified, error, tamperedRejected, body}]`. */
    json::array received() const {
        auto a = api(port_, "").get("/_received");
        return a.status == 200 ? a.json().as_array() : json::array{};
    }
    std::vector<json::object> received_with(std::string const& id) const {
        std::vector<json::object> out;
        for (auto const& r : received())
            if (r.at("id").is_string() && r.at("id").as_string() == id) out.push_back(r.as_object());
        return out;
    }
    std::size_t count_under(std::string const& prefix) const {
        std::size_t n = 0;
        for (auto const& r : received()) n += std::string(r.at("path").as_string()).rfind(prefix, 0) == 0;
        return n;
    }

private:
    std::filesystem::path secrets_;
    child_process node_{{"node", std::string(INTEGRATION_PEERS_DIR) + "/webhook_receiver.mjs", secrets_.string()}};
    std::uint16_t port_ = 0;
};

class host_webhooks : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(std::filesystem::exists(std::string(INTEGRATION_PEERS_DIR) + "/node_modules/standardwebhooks"))
            << "the test peers are not installed: run npm ci in " << INTEGRATION_PEERS_DIR;
        dir_ = std::make_unique<scratch_dir>(::testing::UnitTest::GetInstance()->current_test_info()->name());
        receiver_ = std::make_unique<receiver>(dir_->path() / "secrets");
        host_ = std::make_unique<host_process>(dir_->string());
        key_a_ = create_key(dir_->string(), "tenant-a");
        key_b_ = create_key(dir_->string(), "tenant-b");
        admin_key_ = create_key(dir_->string(), "ops", true);
    }
    api a() const { return api(host_->port(), key_a_); }
    api b() const { return api(host_->port(), key_b_); }
    api admin() const { return api(host_->port(), admin_key_); }

    /** Subscribes `event_type` to the receiver's `/name/hooks`; writes the returned secret for it. */
    json::object subscribe(std::string const& name, std::string const& event_type, json::object extra = {}) {
        json::object body{
            {"projectId", "shop"}, {"eventType", event_type}, {"endpointUrl", receiver_->url("/" + name + "/hooks")}};
        for (auto const& [k, v] : extra) body[k] = v;
        auto r = a().post("/webhooks/subscriptions", body);
        EXPECT_EQ(r.status, 201) << r.body;
        if (r.status != 201) return {};
        auto o = r.json().as_object();
        receiver_->secret(name, str(o, "signingSecret"));
        return o;
    }
    /** Publishes; returns the answer's delivery ids. */
    std::vector<std::string> publish(api const& as, std::string const& event_type, json::value payload) {
        auto r = as.post("/webhooks/deliveries", json::object{{"eventType", event_type}, {"payload", payload}});
        EXPECT_EQ(r.status, 202) << r.body;
        std::vector<std::string> ids;
        if (r.status != 202) return ids;
        auto answer = r.json();
        for (auto const& id : answer.at("deliveryIds").as_array()) ids.emplace_back(id.as_string());
        return ids;
    }
    std::string status_of(std::string const& delivery_id) const {
        auto d = a().get("/webhooks/deliveries/" + delivery_id);
        return d.status == 200 ? str(d.json(), "status") : "HTTP " + std::to_string(d.status);
    }

    std::unique_ptr<scratch_dir> dir_;
    std::unique_ptr<receiver> receiver_;
    std::unique_ptr<host_process> host_;
    std::string key_a_, key_b_, admin_key_;
};

TEST_F(host_webhooks, a_subscription_receives_a_delivery_the_standardwebhooks_library_verifies) {
    auto sub = subscribe("ok", "order.*");
    auto id = str(sub, "subscriptionId");
    auto secret = str(sub, "signingSecret");
    EXPECT_EQ(id.rfind("sub-", 0), 0u) << id;
    EXPECT_EQ(secret.rfind("whsec_", 0), 0u) << "the generated secret is a Standard Webhooks secret";
    EXPECT_FALSE(str(sub, "signingSecretRef").empty());
    EXPECT_EQ(str(sub, "signingSecretRef").find(secret.substr(6)), std::string::npos);
    // The secret is in that answer only.
    auto got = a().get("/webhooks/subscriptions/" + id);
    ASSERT_EQ(got.status, 200) << got.body;
    EXPECT_FALSE(got.json().as_object().contains("signingSecret"));
    EXPECT_EQ(got.body.find(secret.substr(6)), std::string::npos);
    auto listed = a().get("/webhooks/subscriptions");
    ASSERT_EQ(listed.status, 200) << listed.body;
    ASSERT_EQ(listed.json().at("items").as_array().size(), 1u);
    EXPECT_EQ(listed.body.find(secret.substr(6)), std::string::npos);

    auto pub = a().post("/webhooks/deliveries", json::object{{"eventType", "order.paid"},
                                                             {"payload", json::object{{"orderId", "o-1"}}},
                                                             {"idempotencyKey", "order-o-1-paid"}});
    ASSERT_EQ(pub.status, 202) << pub.body;
    auto published = pub.json();
    auto event_id = str(published, "eventId");
    auto const& ids = published.at("deliveryIds").as_array();
    ASSERT_EQ(ids.size(), 1u);
    std::string delivery(ids[0].as_string());
    // The same key and payload answer the first publication.
    auto again = a().post("/webhooks/deliveries", json::object{{"eventType", "order.paid"},
                                                               {"payload", json::object{{"orderId", "o-1"}}},
                                                               {"idempotencyKey", "order-o-1-paid"}});
    ASSERT_EQ(again.status, 202) << again.body;
    EXPECT_EQ(str(again.json(), "eventId"), event_id);
    EXPECT_EQ(again.json().at("deliveryIds").as_array(), ids);
    auto other = a().post("/webhooks/deliveries", json::object{{"eventType", "order.paid"},
                                                               {"payload", json::object{{"orderId", "o-2"}}},
                                                               {"idempotencyKey", "order-o-1-paid"}});
    EXPECT_EQ(other.status, 409) << other.body;
    EXPECT_NE(str(other.json(), "type").find("/idempotency-key-reused"), std::string::npos) << other.body;

    ASSERT_TRUE(eventually([&] { return receiver_->received_with(delivery).size() == 1; }))
        << "the receiver got no delivery; host log: " << host_->log();
    auto arrived = receiver_->received_with(delivery)[0];
    EXPECT_TRUE(arrived.at("verified").as_bool()) << json::serialize(arrived);
    EXPECT_TRUE(arrived.at("tamperedRejected").as_bool()) << "a one-byte change must not verify";
    EXPECT_NE(std::string(arrived.at("body").as_string()).find("o-1"), std::string::npos);

    ASSERT_TRUE(eventually([&] { return status_of(delivery) == "Delivered"; })) << status_of(delivery);
    auto d = a().get("/webhooks/deliveries/" + delivery).json();
    EXPECT_EQ(d.at("attempts").as_int64(), 1);
    auto const& attempts = d.at("deliveryAttempts").as_array();
    ASSERT_EQ(attempts.size(), 1u);
    EXPECT_EQ(attempts[0].at("attempt").as_int64(), 1);
    EXPECT_EQ(attempts[0].at("httpStatus").as_int64(), 204);
    EXPECT_TRUE(attempts[0].as_object().contains("latencyMs"));
    EXPECT_EQ(str(d, "subscriptionId"), id);
    EXPECT_EQ(str(d, "eventId"), event_id);

    for (auto const* query : {"?subscriptionId=", "?direction=Outbound&status=Delivered&subscriptionId="}) {
        auto page = a().get(std::string("/webhooks/deliveries") + query + id);
        ASSERT_EQ(page.status, 200) << page.body;
        ASSERT_EQ(page.json().at("items").as_array().size(), 1u) << query;
        EXPECT_EQ(str(page.json().at("items").at(0), "deliveryId"), delivery);
    }
    EXPECT_EQ(
        a().get("/webhooks/deliveries?status=DeadLettered&subscriptionId=" + id).json().at("items").as_array().size(),
        0u);

    // A replay is sent again with the same webhook-id.
    auto replay = a().post("/webhooks/deliveries/" + delivery + "/replay", json::object{});
    ASSERT_EQ(replay.status, 202) << replay.body;
    ASSERT_TRUE(eventually([&] { return receiver_->received_with(delivery).size() == 2; }));
    EXPECT_TRUE(receiver_->received_with(delivery)[1].at("verified").as_bool());
    ASSERT_TRUE(eventually([&] { return status_of(delivery) == "Delivered"; }));

    auto m = admin().get("/metrics");
    ASSERT_EQ(m.status, 200);
    EXPECT_GE(metric(m.body, "integration_webhook_delivered_total"), 2) << m.body;
    for (auto const* series : {"integration_webhook_deliveries_in_flight", "integration_webhook_delivery_lag_seconds",
                               "integration_webhook_failed_attempts_total", "integration_webhook_dead_lettered_total",
                               "integration_webhook_subscriptions_disabled_total", "integration_webhook_local_failures_total"})
        EXPECT_GE(metric(m.body, series), 0) << series << " is missing";
    EXPECT_EQ(host_->log().find(secret.substr(6)), std::string::npos) << "the secret reached the log";
}

TEST_F(host_webhooks, recover_sends_failed_deliveries_again_with_the_same_webhook_id) {
    auto sub = subscribe(
        "fail", "invoice.*",
        {{"attemptPolicy",
          json::object{{"maxAttempts", 1}, {"initialDelayMs", 1000}, {"maxDelayMs", 1000}, {"timeoutMs", 5000}}}});
    auto id = str(sub, "subscriptionId");
    auto ids = publish(a(), "invoice.due", json::object{{"invoice", 7}});
    ASSERT_EQ(ids.size(), 1u);
    ASSERT_TRUE(eventually([&] { return status_of(ids[0]) == "DeadLettered"; })) << status_of(ids[0]);
    ASSERT_EQ(receiver_->received_with(ids[0]).size(), 1u);
    auto dead = a().get("/webhooks/deliveries?status=DeadLettered&subscriptionId=" + id);
    ASSERT_EQ(dead.json().at("items").as_array().size(), 1u) << dead.body;
    auto d = a().get("/webhooks/deliveries/" + ids[0]).json();
    EXPECT_EQ(d.at("deliveryAttempts").at(0).at("httpStatus").as_int64(), 500);

    // Nothing since a time after it.
    auto none = a().post("/webhooks/subscriptions/" + id + "/recover", json::object{{"since", "2100-01-01T00:00:00Z"}});
    ASSERT_EQ(none.status, 202) << none.body;
    EXPECT_EQ(none.json().at("deliveryIds").as_array().size(), 0u);
    auto rec = a().post("/webhooks/subscriptions/" + id + "/recover", json::object{{"since", "2000-01-01T00:00:00Z"}});
    ASSERT_EQ(rec.status, 202) << rec.body;
    ASSERT_EQ(rec.json().at("deliveryIds").as_array().size(), 1u) << rec.body;
    EXPECT_EQ(rec.json().at("deliveryIds").at(0).as_string(), ids[0]);
    ASSERT_TRUE(eventually([&] { return receiver_->received_with(ids[0]).size() == 2; }))
        << "the recovered delivery was not sent again";
    EXPECT_TRUE(receiver_->received_with(ids[0])[1].at("verified").as_bool());

    for (auto const& [body, says] : std::vector<std::pair<json::object, std::string>>{
             {{}, "since is required"}, {{{"since", "yesterday"}}, "RFC 3339"}, {{{"since", 5}}, "since"}}) {
        auto bad = a().post("/webhooks/subscriptions/" + id + "/recover", body);
        EXPECT_EQ(bad.status, 400) << bad.body;
        EXPECT_EQ(problem_type(bad), "https://integration.dev/problems/validation");
        EXPECT_NE(problem_detail(bad).find(says), std::string::npos) << bad.body;
    }
    auto m = admin().get("/metrics");
    EXPECT_GE(metric(m.body, "integration_webhook_dead_lettered_total"), 1) << m.body;
}

TEST_F(host_webhooks, delete_deactivates_rotate_keeps_deliveries_verifiable_and_reactivate_resumes) {
    auto gone = subscribe("deleted", "evt.*");
    auto live = subscribe("live", "evt.*");
    auto gone_id = str(gone, "subscriptionId");
    // The reason given is kept; a member the route does not take is refused, changing nothing.
    auto misspelt = a().call("DELETE", "/webhooks/subscriptions/" + gone_id, R"({"reasn": "typo"})");
    EXPECT_EQ(misspelt.status, 400) << misspelt.body;
    EXPECT_TRUE(a().get("/webhooks/subscriptions/" + gone_id).json().at("active").as_bool());
    auto del = a().call("DELETE", "/webhooks/subscriptions/" + gone_id, R"({"reason": "customer churned"})");
    ASSERT_EQ(del.status, 200) << del.body;
    EXPECT_FALSE(del.json().at("active").as_bool());
    EXPECT_EQ(str(del.json(), "deactivationReason"), "customer churned");
    // The action routes take no body: one with members is refused, not dropped in silence.
    auto extra = a().call("POST", "/webhooks/subscriptions/" + gone_id + "/reactivate", R"({"maxAttempts": 1})");
    EXPECT_EQ(extra.status, 400) << extra.body;
    EXPECT_NE(extra.body.find("maxAttempts"), std::string::npos) << extra.body;
    EXPECT_FALSE(a().get("/webhooks/subscriptions/" + gone_id).json().at("active").as_bool());
    EXPECT_FALSE(a().get("/webhooks/subscriptions/" + gone_id).json().at("active").as_bool());

    auto ids = publish(a(), "evt.one", json::object{{"n", 1}});
    ASSERT_EQ(ids.size(), 1u) << "only the active subscription gets a delivery";
    // Once the live subscription's delivery arrived, nothing is left to send to the deleted one.
    ASSERT_TRUE(eventually([&] { return receiver_->received_with(ids[0]).size() == 1; }));
    EXPECT_EQ(receiver_->count_under("/deleted/"), 0u);

    // Rotation: a new secret, returned once; deliveries verify with it.
    auto live_id = str(live, "subscriptionId");
    auto rotated = a().post("/webhooks/subscriptions/" + live_id + "/rotate-secret", json::object{});
    ASSERT_EQ(rotated.status, 200) << rotated.body;
    auto new_secret = str(rotated.json(), "signingSecret");
    EXPECT_NE(new_secret, str(live, "signingSecret"));
    EXPECT_EQ(a().get("/webhooks/subscriptions/" + live_id).body.find(new_secret.substr(6)), std::string::npos);
    auto before_switch = publish(a(), "evt.two", json::object{{"n", 2}});
    ASSERT_EQ(before_switch.size(), 1u);
    ASSERT_TRUE(eventually([&] { return receiver_->received_with(before_switch[0]).size() == 1; }));
    EXPECT_TRUE(receiver_->received_with(before_switch[0])[0].at("verified").as_bool())
        << "during the overlap the previous secret still verifies";
    receiver_->secret("live", new_secret);
    auto after_switch = publish(a(), "evt.three", json::object{{"n", 3}});
    ASSERT_EQ(after_switch.size(), 1u);
    ASSERT_TRUE(eventually([&] { return receiver_->received_with(after_switch[0]).size() == 1; }));
    EXPECT_TRUE(receiver_->received_with(after_switch[0])[0].at("verified").as_bool()) << "the new secret verifies";

    auto back = a().post("/webhooks/subscriptions/" + gone_id + "/reactivate", json::object{});
    ASSERT_EQ(back.status, 200) << back.body;
    EXPECT_TRUE(back.json().at("active").as_bool());
    auto resumed = publish(a(), "evt.four", json::object{{"n", 4}});
    EXPECT_EQ(resumed.size(), 2u);
    ASSERT_TRUE(eventually([&] { return receiver_->count_under("/deleted/") == 1; }));
}

TEST_F(host_webhooks, another_tenants_subscriptions_and_deliveries_are_404_on_every_route) {
    auto sub = subscribe("ok", "order.*");
    auto id = str(sub, "subscriptionId");
    auto ids = publish(a(), "order.paid", json::object{{"orderId", "o-9"}});
    ASSERT_EQ(ids.size(), 1u);
    auto const& delivery = ids[0];
    ASSERT_TRUE(eventually([&] { return status_of(delivery) == "Delivered"; }));

    std::vector<std::pair<std::string, std::string>> routes{
        {"GET", "/webhooks/subscriptions/" + id},
        {"DELETE", "/webhooks/subscriptions/" + id},
        {"POST", "/webhooks/subscriptions/" + id + "/reactivate"},
        {"POST", "/webhooks/subscriptions/" + id + "/rotate-secret"},
        {"GET", "/webhooks/deliveries/" + delivery},
        {"POST", "/webhooks/deliveries/" + delivery + "/replay"},
    };
    for (auto const& [method, path] : routes) {
        auto r = b().call(method, path, method == "POST" ? "{}" : "");
        EXPECT_EQ(r.status, 404) << method << " " << path << ": " << r.body;
        if (r.status == 404) {
            EXPECT_EQ(problem_type(r), "https://integration.dev/problems/not-found");
        }
    }
    auto recover =
        b().post("/webhooks/subscriptions/" + id + "/recover", json::object{{"since", "2000-01-01T00:00:00Z"}});
    EXPECT_EQ(recover.status, 404) << recover.body;
    EXPECT_EQ(b().get("/webhooks/subscriptions").json().at("items").as_array().size(), 0u);
    EXPECT_EQ(b().get("/webhooks/deliveries?subscriptionId=" + id).json().at("items").as_array().size(), 0u);
    EXPECT_EQ(b().get("/webhooks/deliveries").json().at("items").as_array().size(), 0u);
    EXPECT_TRUE(publish(b(), "order.paid", json::object{{"orderId", "o-9"}}).empty())
        << "another tenant's publication reaches none of this tenant's subscriptions";
    // Nothing changed for the owner.
    auto mine = a().get("/webhooks/subscriptions/" + id);
    ASSERT_EQ(mine.status, 200);
    EXPECT_TRUE(mine.json().at("active").as_bool());
    EXPECT_EQ(a().get("/webhooks/deliveries/" + delivery).json().at("attempts").as_int64(), 1);
}

TEST_F(host_webhooks, bad_input_is_a_problem_naming_what_to_fix) {
    struct bad_case {
        std::string method, path, body;
        std::string says;
    };
    auto url = receiver_->url("/ok/hooks");
    std::vector<bad_case> cases{
        {"POST", "/webhooks/subscriptions", R"({"projectId":"p","endpointUrl":")" + url + R"("})", "eventType"},
        {"POST", "/webhooks/subscriptions", R"({"projectId":"p","eventType":"a.*"})", "endpointUrl"},
        {"POST", "/webhooks/subscriptions",
         R"({"projectId":"p","eventType":"a.*","endpointUrl":")" + url +
             R"(","filter":{"and":[{"equals":{"path":"$.a","value":1}},{"nonsense":true}]}})",
         "filter.and[1]"},
        {"POST", "/webhooks/subscriptions", R"({"projectId":"p","eventType":"a.*","endpointUrl":"not a url"})",
         "endpointUrl"},
        {"POST", "/webhooks/subscriptions", R"({"projectId":"p","eventType":"a.*","endpointUrl":")", "byte"},
        {"POST", "/webhooks/deliveries", R"({"payload":{}})", "eventType"},
        {"POST", "/webhooks/deliveries", R"({"eventType":"a.b"})", "payload"},
        {"POST", "/webhooks/deliveries", R"({"eventType":"a.b","payload":{},"idempotencyKey":7})", "idempotencyKey"},
        {"GET", "/webhooks/deliveries?status=Lost", "", "status"},
        {"GET", "/webhooks/deliveries?direction=Sideways", "", "direction"},
    };
    for (auto const& c : cases) {
        auto r = a().call(c.method, c.path, c.body);
        EXPECT_EQ(r.status, 400) << c.method << " " << c.path << " " << c.body << ": " << r.body;
        if (r.status != 400) continue;
        EXPECT_EQ(r.headers["content-type"], "application/problem+json");
        EXPECT_NE(problem_detail(r).find(c.says), std::string::npos) << c.body << ": " << r.body;
    }
    EXPECT_EQ(a().get("/webhooks/subscriptions").json().at("items").as_array().size(), 0u) << "nothing was stored";
    EXPECT_EQ(a().get("/webhooks/subscriptions/sub-missing").status, 404);
    EXPECT_EQ(a().get("/webhooks/deliveries/dlv-missing").status, 404);
}

// endpointUrl must pass the egress policy whatever its name resolves to. The refused network is
// stood in for by loopback listeners: the host allows 127.0.0.3 only, each name resolves to
// 127.0.0.3 first and a refused address second (a check of the first answer only would accept it),
// and the listeners on 127.0.0.1, 127.0.0.2 and 127.0.0.3 must receive nothing.
TEST(host_webhooks_egress, endpoints_resolving_to_refused_addresses_are_refused_and_never_called) {
    auto ok = [](received_request const&) {
        return std::string("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
    };
    keep_alive_server stand_in(ok, "127.0.0.3");
    keep_alive_server loopback(ok, "127.0.0.1", stand_in.port());
    keep_alive_server other_loopback(ok, "127.0.0.2", stand_in.port());
    keep_alive_server control(ok, "127.0.0.3");
    scratch_dir dir("webhooks-egress");
    auto hosts = dir.path() / "hosts";
    std::ofstream(hosts) << "127.0.0.3 ten.test meta.test mapped.test loop.test\n"
                            "10.0.0.1 ten.test\n169.254.169.254 meta.test\n::ffff:127.0.0.1 mapped.test\n"
                            "127.0.0.2 loop.test\n127.0.0.3 safe.test\n";
    auto data = dir.string();
    host_process host(data, {"--egress-allow", "127.0.0.3/32", "--hosts-file", hosts.string()});
    api a(host.port(), create_key(data, "tenant-a"));
    auto port = std::to_string(stand_in.port());

    for (auto const& endpoint : {"http://ten.test:" + port + "/x", "http://meta.test:" + port + "/latest/meta-data/",
                                 "http://mapped.test:" + port + "/x", "http://loop.test:" + port + "/x",
                                 "http://[::ffff:127.0.0.1]:" + port + "/x", "http://127.0.0.1:" + port + "/x",
                                 "http://127.0.0.2:" + port + "/x"}) {
        auto r = a.post("/webhooks/subscriptions",
                        json::object{{"projectId", "p"}, {"eventType", "order.*"}, {"endpointUrl", endpoint}});
        EXPECT_EQ(r.status, 422) << endpoint << ": " << r.body;
        if (r.status == 422) {
            EXPECT_EQ(problem_type(r), "https://integration.dev/problems/egress-denied") << endpoint;
        }
    }
    EXPECT_EQ(a.get("/webhooks/subscriptions").json().at("items").as_array().size(), 0u);

    // The control: an endpoint on the allowed address is accepted and delivered to.
    auto sub = a.post("/webhooks/subscriptions",
                      json::object{{"projectId", "p"},
                                   {"eventType", "order.*"},
                                   {"endpointUrl", "http://safe.test:" + std::to_string(control.port()) + "/in"}});
    ASSERT_EQ(sub.status, 201) << sub.body;
    auto pub = a.post("/webhooks/deliveries", json::object{{"eventType", "order.paid"}, {"payload", json::object{}}});
    ASSERT_EQ(pub.status, 202) << pub.body;
    EXPECT_EQ(pub.json().at("deliveryIds").as_array().size(), 1u);
    ASSERT_TRUE(eventually([&] { return control.requests().size() == 1; })) << host.log();
    EXPECT_TRUE(stand_in.requests().empty());
    EXPECT_TRUE(loopback.requests().empty());
    EXPECT_TRUE(other_loopback.requests().empty());
}

// Behind a load balancer the host's public URL reaches it at an address it does not listen on:
// a subscription to it would deliver every event back in as an inbound webhook, which raises an
// event that is delivered again. The name (any spelling) and port of --public-url are refused
// wherever they resolve; the same name at another port is another service.
TEST(host_webhooks_egress, the_hosts_own_public_url_is_never_a_destination) {
    auto ok = [](received_request const&) { return std::string("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"); };
    keep_alive_server balancer(ok, "127.0.0.3");  // stands in for the load balancer before the host
    keep_alive_server other(ok, "127.0.0.3");
    scratch_dir dir("webhooks-own-url");
    auto hosts = dir.path() / "hosts";
    std::ofstream(hosts) << "127.0.0.3 hooks.test\n";
    auto data = dir.string();
    auto port = std::to_string(balancer.port());
    host_process host(data, {"--egress-allow", "127.0.0.3/32", "--hosts-file", hosts.string(), "--public-url",
                             "http://hooks.test:" + port + "/"});
    api a(host.port(), create_key(data, "tenant-a"));
    for (auto const& endpoint : {"http://hooks.test:" + port + "/webhooks/inbound/conn-01JD3Q8V6X4T2M9R5B7N1K0FZC",
                                 "http://HOOKS.test.:" + port + "/x"}) {
        auto r = a.post("/webhooks/subscriptions", json::object{{"projectId", "p"}, {"eventType", "*"}, {"endpointUrl", endpoint}});
        EXPECT_EQ(r.status, 422) << endpoint << ": " << r.body;
        if (r.status == 422) {
            EXPECT_EQ(problem_type(r), "https://integration.dev/problems/egress-denied") << endpoint;
            EXPECT_NE(problem_detail(r).find("own public address"), std::string::npos) << r.body;
        }
    }
    auto elsewhere = a.post("/webhooks/subscriptions", json::object{{"projectId", "p"},
                                                                    {"eventType", "*"},
                                                                    {"endpointUrl", "http://hooks.test:" + std::to_string(other.port()) + "/in"}});
    ASSERT_EQ(elsewhere.status, 201) << elsewhere.body;
    auto pub = a.post("/webhooks/deliveries", json::object{{"eventType", "order.paid"}, {"payload", json::object{}}});
    ASSERT_EQ(pub.status, 202) << pub.body;
    ASSERT_TRUE(eventually([&] { return other.requests().size() == 1; })) << host.log();
    EXPECT_TRUE(balancer.requests().empty());
}

}  // namespace
}  // namespace integration::testing
