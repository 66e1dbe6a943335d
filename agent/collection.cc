#include "agent/collection.h"

namespace vigie::agent {

v1::Sample& Collection::NewSample(absl::string_view name, double value, int64_t timestamp_ms,
                                  MetricType type, absl::string_view help) {
  v1::Sample& s = samples.emplace_back();
  s.set_name(name.data(), name.size());
  s.set_value(value);
  s.set_timestamp_ms(timestamp_ms);
  if (info.find(name) == info.end()) {
    info.emplace(std::string(name), MetricInfo{type, std::string(help)});
  }
  return s;
}

void Collection::Add(absl::string_view name,
                     std::initializer_list<std::pair<absl::string_view, absl::string_view>> labels,
                     double value, int64_t timestamp_ms, MetricType type, absl::string_view help) {
  v1::Sample& s = NewSample(name, value, timestamp_ms, type, help);
  if (labels.size() == 0) return;
  auto* m = s.mutable_labels();
  for (const auto& [k, v] : labels) (*m)[std::string(k)].assign(v.data(), v.size());
}

void Collection::Add(absl::string_view name, const std::map<std::string, std::string>& labels,
                     double value, int64_t timestamp_ms, MetricType type, absl::string_view help) {
  v1::Sample& s = NewSample(name, value, timestamp_ms, type, help);
  if (labels.empty()) return;
  auto* m = s.mutable_labels();
  for (const auto& [k, v] : labels) (*m)[k] = v;
}

}  // namespace vigie::agent
