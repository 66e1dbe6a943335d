#include "agent/collection.h"

namespace vigie::agent {

void Collection::Add(absl::string_view name, std::map<std::string, std::string> labels,
                     double value, int64_t timestamp_ms, MetricType type, absl::string_view help) {
  v1::Sample& s = samples.emplace_back();
  s.set_name(name.data(), name.size());
  if (!labels.empty()) {
    auto* m = s.mutable_labels();
    for (auto& [k, v] : labels) (*m)[k] = std::move(v);
  }
  s.set_value(value);
  s.set_timestamp_ms(timestamp_ms);
  if (info.find(name) == info.end()) {
    info.emplace(std::string(name), MetricInfo{type, std::string(help)});
  }
}

}  // namespace vigie::agent
