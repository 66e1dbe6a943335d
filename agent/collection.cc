#include "agent/collection.h"

namespace vigie::agent {

void Collection::Add(const std::string& name, std::map<std::string, std::string> labels,
                     double value, int64_t timestamp_ms, MetricType type, const std::string& help) {
  v1::Sample& s = samples.emplace_back();
  s.set_name(name);
  for (auto& [k, v] : labels) (*s.mutable_labels())[k] = std::move(v);
  s.set_value(value);
  s.set_timestamp_ms(timestamp_ms);
  auto [it, inserted] = info.try_emplace(name);
  if (inserted) it->second = {type, help};
}

}  // namespace vigie::agent
