#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "agent/collectors/collector.h"
#include "agent/collectors/procfs.h"
#include "common/status.h"

namespace vigie::agent {
namespace {

class CpuCollector : public Collector {
 public:
  explicit CpuCollector(const HostPaths& p)
      : file_(JoinPath(p.procfs, "/stat")), ticks_(static_cast<double>(sysconf(_SC_CLK_TCK))) {}
  const char* name() const override { return "cpu"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    VIGIE_ASSIGN_OR_RETURN(std::string text, file_.Read());
    VIGIE_ASSIGN_OR_RETURN(std::vector<CpuTimes> cpus, ParseProcStat(text, ticks_));
    for (const CpuTimes& c : cpus) {
      for (const auto& [mode, s] : c.seconds) {
        out->Add("node_cpu_seconds_total", {{"cpu", c.cpu}, {"mode", mode}}, s, now_ms,
                 MetricType::kCounter, "Seconds the CPUs spent in each mode.");
      }
      for (const auto& [mode, s] : c.guest_seconds) {
        out->Add("node_cpu_guest_seconds_total", {{"cpu", c.cpu}, {"mode", mode}}, s, now_ms,
                 MetricType::kCounter, "Seconds the CPUs spent in guests (VMs) for each mode.");
      }
    }
    return absl::OkStatus();
  }

 private:
  ProcFile file_;
  double ticks_;
};

}  // namespace

std::unique_ptr<Collector> NewCpuCollector(const CollectorConfig& c) {
  return std::make_unique<CpuCollector>(c.paths);
}

}  // namespace vigie::agent
