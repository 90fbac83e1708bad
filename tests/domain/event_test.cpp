#include <integration/domain/event.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

namespace integration::testing {
namespace {

// The outbox stores each envelope as text written without a DOM: it must be the same document
// as the DOM's, whatever the strings hold.
TEST(event_envelope, serialize_envelope_writes_the_same_document_as_the_dom) {
    auto ctx = request_context::for_tenant("t-1", "alice");
    ctx.correlation_id = "corr \"quoted\" \\ back\nslash\ttab\x01 é";
    boost::json::object data{{"runId", "run-1"}, {"nested", boost::json::object{{"n", 3}, {"s", "a\"b"}}}};
    auto env = events::make_envelope({std::string(events::event_type::run_completed), data}, ctx, "IntegrationRun", "run-1",
                                     "t-1", 7, std::chrono::system_clock::now());
    env.source = "integration-host";
    auto text = events::serialize_envelope(env);
    EXPECT_EQ(boost::json::parse(text), to_json(env)) << text;
    EXPECT_EQ(text, boost::json::serialize(to_json(env)));
}

// Text from outside that is not UTF-8 (a vendor's header copied into an event) is stored as
// U+FFFD: the stored envelope is always JSON that a reader takes back, so the event can be
// published instead of being parked as corrupt.
TEST(event_envelope, text_that_is_not_utf8_is_stored_as_replacement_characters) {
    auto ctx = request_context::for_tenant("t-1", "alice");
    ctx.correlation_id = "corr\xff";
    boost::json::object data{{"externalRef", "ab\xff\xfe" "cd"}, {"ok", "caf\xc3\xa9"}};
    auto env = events::make_envelope({std::string(events::event_type::run_completed), data}, ctx, "IntegrationRun", "run-1",
                                     "t-1", 7, std::chrono::system_clock::now());
    auto text = events::serialize_envelope(env);
    boost::system::error_code ec;
    auto back = boost::json::parse(text, ec);
    ASSERT_FALSE(ec) << ec.message() << ": " << text;
    EXPECT_EQ(back.at("data").at("externalRef").as_string(), "ab\xef\xbf\xbd\xef\xbf\xbd" "cd");
    EXPECT_EQ(back.at("data").at("ok").as_string(), "caf\xc3\xa9");
    EXPECT_EQ(back.at("correlationId").as_string(), "corr\xef\xbf\xbd");
}

}  // namespace
}  // namespace integration::testing
