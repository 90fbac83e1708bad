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

}  // namespace
}  // namespace integration::testing
