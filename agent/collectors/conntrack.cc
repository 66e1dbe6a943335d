#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/collectors/collector.h"
#include "agent/collectors/procfs.h"
#include "common/status.h"

namespace vigie::agent {
namespace {

// node_nf_conntrack_entries and _entries_limit, where the nf_conntrack module is loaded.
class ConntrackCollector : public Collector {
 public:
  explicit ConntrackCollector(const HostPaths& p)
      : dir_(JoinPath(p.procfs, "/sys/net/netfilter")),
        stat_path_(JoinPath(p.procfs, "/net/stat/nf_conntrack")) {}
  const char* name() const override { return "conntrack"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    for (const auto& [file, metric, help] :
         {std::tuple{"nf_conntrack_count", "node_nf_conntrack_entries",
                     "Number of currently allocated flow entries for connection tracking."},
          std::tuple{"nf_conntrack_max", "node_nf_conntrack_entries_limit",
                     "Maximum size of connection tracking table."}}) {
      absl::StatusOr<std::string> text = files_.Read(absl::StrCat(dir_, "/", file));
      if (absl::IsNotFound(text.status())) return absl::OkStatus();  // no conntrack here
      if (!text.ok()) return text.status();
      double v;
      if (!absl::SimpleAtod(absl::StripAsciiWhitespace(*text), &v)) {
        return absl::InvalidArgumentError(absl::StrCat(dir_, "/", file, ": not a number"));
      }
      out->Add(metric, {}, v, now_ms, MetricType::kGauge, help);
    }
    // Per-CPU event counters, summed (node_exporter exports them as gauges too).
    absl::StatusOr<std::string> stat = files_.Read(stat_path_);
    if (!stat.ok()) return absl::OkStatus();
    std::vector<absl::string_view> lines = absl::StrSplit(*stat, '\n', absl::SkipEmpty());
    if (lines.empty()) return absl::OkStatus();
    std::vector<absl::string_view> header = absl::StrSplit(lines[0], ' ', absl::SkipEmpty());
    std::map<std::string, double> sums;
    for (size_t i = 1; i < lines.size(); ++i) {
      std::vector<absl::string_view> f = absl::StrSplit(lines[i], ' ', absl::SkipEmpty());
      for (size_t j = 0; j < f.size() && j < header.size(); ++j) {
        uint64_t v;
        if (absl::SimpleHexAtoi(f[j], &v)) sums[std::string(header[j])] += static_cast<double>(v);
      }
    }
    for (const char* field : {"found", "invalid", "ignore", "insert", "insert_failed", "drop",
                              "early_drop", "search_restart"}) {
      auto it = sums.find(field);
      if (it == sums.end()) continue;
      out->Add(absl::StrCat("node_nf_conntrack_stat_", field), {}, it->second, now_ms,
               MetricType::kGauge, absl::StrCat("Conntrack statistic ", field, "."));
    }
    return absl::OkStatus();
  }

 private:
  std::string dir_;
  ProcFileSet files_;
  std::string stat_path_;
};

}  // namespace

std::unique_ptr<Collector> NewConntrackCollector(const CollectorConfig& c) {
  return std::make_unique<ConntrackCollector>(c.paths);
}

}  // namespace vigie::agent
