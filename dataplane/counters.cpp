#include "dataplane/counters.hpp"

namespace tandem {

#define TANDEM_NAME_ITEM(id, name) name,

const char* to_string(DropReason r) {
  static constexpr const char* kNames[] = {TANDEM_DROP_REASONS(TANDEM_NAME_ITEM)};
  const auto i = static_cast<std::size_t>(r);
  return i < kDropReasonCount ? kNames[i] : "unknown";
}

const char* to_string(Handled h) {
  static constexpr const char* kNames[] = {TANDEM_HANDLED_EVENTS(TANDEM_NAME_ITEM)};
  const auto i = static_cast<std::size_t>(h);
  return i < kHandledCount ? kNames[i] : "unknown";
}

#undef TANDEM_NAME_ITEM

}  // namespace tandem
