#include <integration/domain/webhook_filter.hpp>
