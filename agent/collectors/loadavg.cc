#include "absl/strings/str_cat.h"
#include "agent/collectors/collector.h"
#include "agent/collectors/procfs.h"
#include "common/status.h"

namespace vigie::agent {
namespace {

class LoadCollector : public Collector {
 public:
  explicit LoadCollector(const HostPaths& p) : file_(JoinPath(p.procfs, "/loadavg")) {}
  const char* name() const override { return "loadavg"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    VIGIE_ASSIGN_OR_RETURN(std::string text, file_.Read());
    VIGIE_ASSIGN_OR_RETURN(LoadAverage l, ParseLoadavg(text));
    out->Add("node_load1", {}, l.load1, now_ms, MetricType::kGauge, "1m load average.");
    out->Add("node_load5", {}, l.load5, now_ms, MetricType::kGauge, "5m load average.");
    out->Add("node_load15", {}, l.load15, now_ms, MetricType::kGauge, "15m load average.");
    return absl::OkStatus();
  }

 private:
  ProcFile file_;
};

}  // namespace

std::unique_ptr<Collector> NewLoadavgCollector(const CollectorConfig& c) {
  return std::make_unique<LoadCollector>(c.paths);
}

}  // namespace vigie::agent
