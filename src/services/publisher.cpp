#include <integration/services/publisher.hpp>
