#include "agent/host_metrics.h"

#include <algorithm>
#include <map>

#include "common/mutex.h"
#include "prometheus/metric_family.h"

namespace vigie::agent {

void HostMetrics::Update(std::shared_ptr<const HostSnapshot> latest) {
  MutexLock lock(&mu_);
  latest_ = std::move(latest);
}

std::vector<prometheus::MetricFamily> HostMetrics::Collect() const {
  std::shared_ptr<const HostSnapshot> c;
  {
    MutexLock lock(&mu_);
    c = latest_;
  }
  if (!c) return {};
  std::map<std::string, prometheus::MetricFamily> families;
  for (const auto& batch : c->batches) {
    for (const v1::Sample& s : batch->metrics().samples()) {
      prometheus::MetricFamily& f = families[s.name()];
      if (f.name.empty()) {
        f.name = s.name();
        auto it = c->info.find(s.name());
        MetricType t = it == c->info.end() ? MetricType::kUntyped : it->second.type;
        f.help = it == c->info.end() ? "" : it->second.help;
        f.type = t == MetricType::kCounter ? prometheus::MetricType::Counter
                 : t == MetricType::kGauge ? prometheus::MetricType::Gauge
                                           : prometheus::MetricType::Untyped;
      }
      prometheus::ClientMetric& m = f.metric.emplace_back();
      for (const auto& [k, v] : s.labels()) m.label.push_back({k, v});
      std::sort(m.label.begin(), m.label.end(),
                [](const auto& a, const auto& b) { return a.name < b.name; });
      if (f.type == prometheus::MetricType::Counter) {
        m.counter.value = s.value();
      } else if (f.type == prometheus::MetricType::Gauge) {
        m.gauge.value = s.value();
      } else {
        m.untyped.value = s.value();
      }
    }
  }
  std::vector<prometheus::MetricFamily> out;
  out.reserve(families.size());
  for (auto& [name, f] : families) out.push_back(std::move(f));
  return out;
}

}  // namespace vigie::agent
