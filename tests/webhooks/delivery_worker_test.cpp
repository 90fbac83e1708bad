#include <integration/services/delivery_worker.hpp>

#include <gtest/gtest.h>
