#include <integration/services/webhook_signature.hpp>
