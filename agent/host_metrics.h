// Serves the latest collection on the agent's /metrics, so Prometheus can scrape the agent in
// place of node_exporter.
#ifndef VIGIE_AGENT_HOST_METRICS_H_
#define VIGIE_AGENT_HOST_METRICS_H_

#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "agent/collection.h"
#include "common/mutex.h"
#include "prometheus/collectable.h"

namespace vigie::agent {

// The latest full round: the very batches queued for the control plane (shared, not copied)
// and each metric's type and help.
struct HostSnapshot {
  std::vector<std::shared_ptr<const v1::AgentMessage>> batches;
  std::map<std::string, MetricInfo, std::less<>> info;
};

// Thread-safe: Update() from the collection loop, Collect() from HTTP threads.
class HostMetrics : public prometheus::Collectable {
 public:
  void Update(std::shared_ptr<const HostSnapshot> latest);
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  mutable Mutex mu_;
  std::shared_ptr<const HostSnapshot> latest_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vigie::agent

#endif  // VIGIE_AGENT_HOST_METRICS_H_
