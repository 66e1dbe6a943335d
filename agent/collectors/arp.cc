#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/collectors/collector.h"
#include "common/status.h"

namespace vigie::agent {
namespace {

// node_arp_entries{device} from /proc/net/arp.
class ArpCollector : public Collector {
 public:
  explicit ArpCollector(const HostPaths& p) : file_(JoinPath(p.procfs, "/net/arp")) {}
  const char* name() const override { return "arp"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    VIGIE_ASSIGN_OR_RETURN(std::string text, file_.Read());
    std::map<std::string, double> by_device;
    bool header = true;
    for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
      if (header) {
        header = false;
        continue;
      }
      std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (f.size() == 6) ++by_device[std::string(f[5])];
    }
    for (const auto& [device, n] : by_device) {
      out->Add("node_arp_entries", {{"device", device}}, n, now_ms, MetricType::kGauge,
               "ARP entries by device");
    }
    return absl::OkStatus();
  }

 private:
  ProcFile file_;
};

}  // namespace

std::unique_ptr<Collector> NewArpCollector(const CollectorConfig& c) {
  return std::make_unique<ArpCollector>(c.paths);
}

}  // namespace vigie::agent
