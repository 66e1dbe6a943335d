#include "absl/strings/str_cat.h"
#include "agent/collectors/collector.h"
#include "agent/collectors/procfs.h"
#include "common/status.h"

namespace vigie::agent {
namespace {

// node_exporter's "stat" collector: the rest of /proc/stat.
class StatCollector : public Collector {
 public:
  explicit StatCollector(const HostPaths& p) : file_(JoinPath(p.procfs, "/stat")) {}
  const char* name() const override { return "stat"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    VIGIE_ASSIGN_OR_RETURN(std::string text, file_.Read());
    VIGIE_ASSIGN_OR_RETURN(StatCounters c, ParseStatCounters(text));
    out->Add("node_boot_time_seconds", {}, c.boot_time, now_ms, MetricType::kGauge,
             "Node boot time, in unixtime.");
    out->Add("node_context_switches_total", {}, c.context_switches, now_ms, MetricType::kCounter,
             "Total number of context switches.");
    out->Add("node_forks_total", {}, c.forks, now_ms, MetricType::kCounter,
             "Total number of forks.");
    out->Add("node_intr_total", {}, c.interrupts, now_ms, MetricType::kCounter,
             "Total number of interrupts serviced.");
    out->Add("node_procs_blocked", {}, c.procs_blocked, now_ms, MetricType::kGauge,
             "Number of processes blocked waiting for I/O to complete.");
    out->Add("node_procs_running", {}, c.procs_running, now_ms, MetricType::kGauge,
             "Number of processes in runnable state.");
    return absl::OkStatus();
  }

 private:
  ProcFile file_;
};

}  // namespace

std::unique_ptr<Collector> NewStatCollector(const CollectorConfig& c) {
  return std::make_unique<StatCollector>(c.paths);
}

}  // namespace vigie::agent
