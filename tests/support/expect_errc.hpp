#ifndef INTEGRATION_TESTS_SUPPORT_EXPECT_ERRC_HPP
#define INTEGRATION_TESTS_SUPPORT_EXPECT_ERRC_HPP

#include <gtest/gtest.h>

/** Asserts that `expr` (a result) failed with `code`. */
#define EXPECT_ERRC(expr, code)                                                                 \
    do {                                                                                        \
        auto const& r_ = (expr);                                                                \
        ASSERT_FALSE(r_) << "expected " #code;                                                  \
        EXPECT_TRUE(r_.error() == (code)) << "got: " << r_.error().message();                   \
    } while (0)

#endif
