#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "agent/collectors/collector.h"
#include "agent/collectors/procfs.h"
#include "common/status.h"

namespace vigie::agent {
namespace {

// node_nf_conntrack_entries and _entries_limit, where the nf_conntrack module is loaded.
class ConntrackCollector : public Collector {
 public:
  explicit ConntrackCollector(const HostPaths& p)
      : dir_(JoinPath(p.procfs, "/sys/net/netfilter")) {}
  const char* name() const override { return "conntrack"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    for (const auto& [file, metric, help] :
         {std::tuple{"nf_conntrack_count", "node_nf_conntrack_entries",
                     "Number of currently allocated flow entries for connection tracking."},
          std::tuple{"nf_conntrack_max", "node_nf_conntrack_entries_limit",
                     "Maximum size of connection tracking table."}}) {
      absl::StatusOr<std::string> text = ReadProcFile(absl::StrCat(dir_, "/", file));
      if (absl::IsNotFound(text.status())) return absl::OkStatus();  // no conntrack here
      if (!text.ok()) return text.status();
      double v;
      if (!absl::SimpleAtod(absl::StripAsciiWhitespace(*text), &v)) {
        return absl::InvalidArgumentError(absl::StrCat(dir_, "/", file, ": not a number"));
      }
      out->Add(metric, {}, v, now_ms, MetricType::kGauge, help);
    }
    return absl::OkStatus();
  }

 private:
  std::string dir_;
};

}  // namespace

std::unique_ptr<Collector> NewConntrackCollector(const CollectorConfig& c) {
  return std::make_unique<ConntrackCollector>(c.paths);
}

}  // namespace vigie::agent
