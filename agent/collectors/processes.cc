#include <dirent.h>

#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "agent/collectors/collector.h"
#include "agent/collectors/procfs.h"
#include "common/status.h"

namespace vigie::agent {
namespace {

// Processes and threads by state from /proc/<pid>/stat (node_exporter's "processes"):
// node_processes_state{state}, node_processes_threads, node_processes_pids,
// node_processes_max_processes, node_processes_max_threads.
class ProcessesCollector : public Collector {
 public:
  explicit ProcessesCollector(const HostPaths& p) : procfs_(p.procfs) {}
  const char* name() const override { return "processes"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    DIR* dir = opendir(procfs_.c_str());
    if (dir == nullptr) return absl::UnavailableError(absl::StrCat(procfs_, ": cannot open"));
    // Every state node_exporter reports, so a series exists even at zero.
    std::map<std::string, double> states = {{"D", 0}, {"I", 0}, {"R", 0}, {"S", 0},
                                            {"T", 0}, {"X", 0}, {"Z", 0}};
    double pids = 0, threads = 0;
    while (dirent* e = readdir(dir)) {
      uint64_t pid;
      if (!absl::SimpleAtoi(e->d_name, &pid)) continue;
      absl::StatusOr<std::string> text = ReadProcFile(absl::StrCat(procfs_, "/", pid, "/stat"));
      if (!text.ok()) continue;  // exited meanwhile
      absl::StatusOr<ProcessStat> st = ParseProcessStat(*text);
      if (!st.ok()) continue;
      ++pids;
      threads += st->threads;
      ++states[std::string(1, st->state)];
    }
    closedir(dir);
    for (const auto& [state, n] : states) {
      out->Add("node_processes_state", {{"state", state}}, n, now_ms, MetricType::kGauge,
               "Number of processes in each state.");
    }
    out->Add("node_processes_pids", {}, pids, now_ms, MetricType::kGauge, "Number of PIDs");
    out->Add("node_processes_threads", {}, threads, now_ms, MetricType::kGauge,
             "Allocated threads in system");
    for (const auto& [file, metric, help] :
         {std::tuple{"/sys/kernel/pid_max", "node_processes_max_processes",
                     "Number of max PIDs limit"},
          std::tuple{"/sys/kernel/threads-max", "node_processes_max_threads",
                     "Limit of threads in the system"}}) {
      absl::StatusOr<std::string> text = ReadProcFile(JoinPath(procfs_, file));
      double v;
      if (text.ok() && absl::SimpleAtod(absl::StripAsciiWhitespace(*text), &v)) {
        out->Add(metric, {}, v, now_ms, MetricType::kGauge, help);
      }
    }
    return absl::OkStatus();
  }

 private:
  std::string procfs_;
};

}  // namespace

std::unique_ptr<Collector> NewProcessesCollector(const CollectorConfig& c) {
  return std::make_unique<ProcessesCollector>(c.paths);
}

}  // namespace vigie::agent
