#include <integration/domain/webhook_filter.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <string>

namespace {

using integration::errc;
using integration::webhooks::payload_filter;

boost::json::value json(std::string_view text) { return boost::json::parse(text); }

payload_filter filter(std::string_view text) {
    auto f = payload_filter::parse(json(text));
    if (!f) throw std::runtime_error("filter refused: " + f.error().message());
    return *f;
}

/** The refusal of a malformed filter: its detail starts with the position. */
std::string refusal(std::string_view text) {
    auto f = payload_filter::parse(json(text));
    if (f) return "(accepted)";
    EXPECT_EQ(f.error(), errc::invalid_argument);
    return f.error().detail();
}

bool starts_with(std::string const& s, std::string_view prefix) { return s.rfind(prefix, 0) == 0; }

boost::json::value const order = json(R"({
  "order": {"status": "paid", "total": 12, "currency": "EUR", "note": null,
            "tags": ["vip", "gift"], "lines": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1.5}]},
  "region": "eu", "flags": {"test": false}, "odd key": {"with-dash_and space": 1}
})");

// ---- evaluation -------------------------------------------------------------------------------

TEST(webhook_filter_test, equals_compares_the_value_at_the_path) {
    EXPECT_TRUE(filter(R"({"equals": {"path": "$.order.status", "value": "paid"}})").matches(order));
    EXPECT_FALSE(filter(R"({"equals": {"path": "$.order.status", "value": "refunded"}})").matches(order));
    EXPECT_FALSE(filter(R"({"equals": {"path": "$.order.status", "value": "PAID"}})").matches(order));
    EXPECT_TRUE(filter(R"({"equals": {"path": "$.order.lines[1].sku", "value": "B-2"}})").matches(order));
    EXPECT_TRUE(filter(R"({"equals": {"path": "$.order.tags", "value": ["vip", "gift"]}})").matches(order));
    EXPECT_FALSE(filter(R"({"equals": {"path": "$.order.tags", "value": ["gift", "vip"]}})").matches(order));
    EXPECT_TRUE(filter(R"({"equals": {"path": "$.flags", "value": {"test": false}}})").matches(order));
    EXPECT_TRUE(filter(R"({"equals": {"path": "$.order.note", "value": null}})").matches(order));
    EXPECT_TRUE(filter(R"({"equals": {"path": "$.odd key.with-dash_and space", "value": 1}})").matches(order));
    EXPECT_FALSE(filter(R"({"equals": {"path": "$.flags.test", "value": 0}})").matches(order));
    EXPECT_FALSE(filter(R"({"equals": {"path": "$.order.total", "value": "12"}})").matches(order));
}

TEST(webhook_filter_test, numbers_compare_by_value) {
    for (auto value : {"12", "12.0", "1.2e1"})
        EXPECT_TRUE(filter(std::string(R"({"equals": {"path": "$.order.total", "value": )") + value + "}}").matches(order))
            << value;
    EXPECT_TRUE(filter(R"({"equals": {"path": "$.order.lines[1].qty", "value": 1.5}})").matches(order));
    EXPECT_FALSE(filter(R"({"equals": {"path": "$.order.total", "value": 12.5}})").matches(order));
    EXPECT_TRUE(filter(R"({"equals": {"path": "$.n", "value": 18446744073709551615}})")
                    .matches(json(R"({"n": 18446744073709551615})")));
    EXPECT_TRUE(filter(R"({"equals": {"path": "$.n", "value": 5}})").matches(json(R"({"n": 5})")));
    EXPECT_TRUE(filter(R"({"equals": {"path": "$.n", "value": [1, {"x": 2}]}})").matches(json(R"({"n": [1.0, {"x": 2.0}]})")));
}

TEST(webhook_filter_test, in_matches_any_of_the_values) {
    EXPECT_TRUE(filter(R"({"in": {"path": "$.region", "values": ["us", "eu"]}})").matches(order));
    EXPECT_FALSE(filter(R"({"in": {"path": "$.region", "values": ["us", "apac"]}})").matches(order));
    EXPECT_TRUE(filter(R"({"in": {"path": "$.order.total", "values": ["12", 12.0]}})").matches(order));
    EXPECT_FALSE(filter(R"({"in": {"path": "$.missing", "values": [null]}})").matches(order));
}

TEST(webhook_filter_test, exists_names_a_value_null_included) {
    EXPECT_TRUE(filter(R"({"exists": {"path": "$.order.note"}})").matches(order));
    EXPECT_TRUE(filter(R"({"exists": {"path": "$.order.tags[1]"}})").matches(order));
    EXPECT_TRUE(filter(R"({"exists": {"path": "$"}})").matches(order));
    EXPECT_FALSE(filter(R"({"exists": {"path": "$.order.tags[2]"}})").matches(order));
    EXPECT_FALSE(filter(R"({"exists": {"path": "$.order.status.code"}})").matches(order));
    EXPECT_FALSE(filter(R"({"exists": {"path": "$.order[0]"}})").matches(order));
    EXPECT_FALSE(filter(R"({"exists": {"path": "$.order.tags.vip"}})").matches(order));
    EXPECT_FALSE(filter(R"({"exists": {"path": "$.customer"}})").matches(order));
}

TEST(webhook_filter_test, a_path_that_names_nothing_makes_equals_false) {
    auto f = filter(R"({"equals": {"path": "$.order.status", "value": "paid"}})");
    for (auto payload : {R"({})", R"([])", R"(null)", R"("paid")", R"({"order": "paid"})", R"({"order": {"status": ["paid"]}})"})
        EXPECT_FALSE(f.matches(json(payload))) << payload;
}

TEST(webhook_filter_test, and_or_not_combine) {
    auto f = filter(R"({"and": [
        {"equals": {"path": "$.order.status", "value": "paid"}},
        {"or": [{"in": {"path": "$.region", "values": ["eu"]}}, {"exists": {"path": "$.order.vat"}}]},
        {"not": {"equals": {"path": "$.flags.test", "value": true}}}]})");
    EXPECT_TRUE(f.matches(order));
    auto us = order;
    us.at("region") = "us";
    EXPECT_FALSE(f.matches(us));
    us.at("order").as_object()["vat"] = 0.2;
    EXPECT_TRUE(f.matches(us));
    auto test = order;
    test.at("flags").at("test") = true;
    EXPECT_FALSE(f.matches(test));
    EXPECT_TRUE(filter(R"({"not": {"not": {"exists": {"path": "$.region"}}}})").matches(order));
    EXPECT_FALSE(filter(R"({"or": [{"exists": {"path": "$.a"}}, {"exists": {"path": "$.b"}}]})").matches(order));
}

TEST(webhook_filter_test, a_filter_is_copyable_and_shared_safely) {
    auto f = filter(R"({"exists": {"path": "$.region"}})");
    auto g = f;
    EXPECT_TRUE(g.matches(order));
    EXPECT_TRUE(f.matches(order));
}

// ---- malformed filters name their position ------------------------------------------------------

TEST(webhook_filter_test, malformed_filters_name_the_position_of_the_fault) {
    struct bad_case {
        std::string_view filter;
        std::string_view position;
    };
    bad_case const cases[] = {
        {R"("paid")", "filter: "},
        {R"({})", "filter: "},
        {R"({"equals": {"path": "$.a", "value": 1}, "exists": {"path": "$.a"}})", "filter: "},
        {R"({"matches": {"path": "$.a"}})", "filter.matches: "},
        {R"({"equals": []})", "filter.equals: "},
        {R"({"equals": {"value": 1}})", "filter.equals.path: "},
        {R"({"equals": {"path": "$.a"}})", "filter.equals.value: "},
        {R"({"equals": {"path": "$.a", "value": 1, "op": "gt"}})", "filter.equals.op: "},
        {R"({"equals": {"path": 7, "value": 1}})", "filter.equals.path: "},
        {R"({"in": {"path": "$.a", "values": []}})", "filter.in.values: "},
        {R"({"in": {"path": "$.a", "values": "eu"}})", "filter.in.values: "},
        {R"({"exists": {"path": "a.b"}})", "filter.exists.path: "},
        {R"({"and": []})", "filter.and: "},
        {R"({"or": {"exists": {"path": "$.a"}}})", "filter.or: "},
        {R"({"and": [{"exists": {"path": "$.a"}}, {"equals": {"path": "$.a..b", "value": 1}}]})", "filter.and[1].equals.path: "},
        {R"({"or": [{"exists": {"path": "$.a"}}, {"not": {"in": {"path": "$.a", "valuez": [1]}}}]})",
         "filter.or[1].not.in.valuez: "},
        {R"({"not": {"and": [{"exists": {"path": "$.a"}}, 3]}})", "filter.not.and[1]: "},
    };
    for (auto const& c : cases) {
        auto why = refusal(c.filter);
        EXPECT_TRUE(starts_with(why, c.position)) << c.filter << " -> " << why;
    }
}

TEST(webhook_filter_test, malformed_paths_are_refused) {
    for (auto path : {"", "$$", "$.", "$..a", "$a", "a", "$.a[", "$.a[]", "$.a[-1]", "$.a[01]", "$.a[x]", "$.a]",
                      "$.a[1]b", "$.a[99999999999]", "$ .a", "$.a\u0001"}) {
        boost::json::object spec{{"exists", {{"path", path}}}};
        auto why = refusal(boost::json::serialize(spec));
        EXPECT_TRUE(starts_with(why, "filter.exists.path: ")) << path << " -> " << why;
    }
    for (auto path : {"$", "$.a", "$[0]", "$.a[0][1].b", "$.a-b.c_d", "$.0", "$.a b"}) {
        boost::json::object spec{{"exists", {{"path", path}}}};
        EXPECT_EQ(refusal(boost::json::serialize(spec)), "(accepted)") << path;
    }
}

TEST(webhook_filter_test, limits_paths_operands_and_nesting) {
    std::string path = "$";
    for (int i = 0; i < 32; ++i) path += ".a";
    boost::json::object ok{{"exists", {{"path", path}}}};
    EXPECT_EQ(refusal(boost::json::serialize(ok)), "(accepted)");
    boost::json::object too_long{{"exists", {{"path", path + "[0]"}}}};
    EXPECT_TRUE(starts_with(refusal(boost::json::serialize(too_long)), "filter.exists.path: "));

    boost::json::array operands;
    for (int i = 0; i < 32; ++i) operands.push_back(json(R"({"exists": {"path": "$.a"}})"));
    EXPECT_EQ(refusal(boost::json::serialize(boost::json::object{{"or", operands}})), "(accepted)");
    operands.push_back(json(R"({"exists": {"path": "$.a"}})"));
    EXPECT_TRUE(starts_with(refusal(boost::json::serialize(boost::json::object{{"or", operands}})), "filter.or: "));

    // Depth 16 (15 nots around a leaf) is accepted; 17 is refused where it goes too deep.
    auto nest = [](int nots) {
        boost::json::value v = json(R"({"exists": {"path": "$.a"}})");
        for (int i = 0; i < nots; ++i) v = boost::json::object{{"not", v}};
        return boost::json::serialize(v);
    };
    EXPECT_EQ(refusal(nest(15)), "(accepted)");
    std::string deep_position = "filter";
    for (int i = 0; i < 16; ++i) deep_position += ".not";
    auto why = refusal(nest(16));
    EXPECT_TRUE(starts_with(why, deep_position + ": ")) << why;
    EXPECT_NE(why.find("16"), std::string::npos) << why;
}

}  // namespace
