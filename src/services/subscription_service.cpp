#include <integration/services/subscription_service.hpp>
