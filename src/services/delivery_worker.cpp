#include <integration/services/delivery_worker.hpp>
