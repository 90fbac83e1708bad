#include <integration/services/publisher.hpp>

#include <gtest/gtest.h>
