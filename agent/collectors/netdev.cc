#include "absl/strings/str_cat.h"
#include "agent/collectors/collector.h"
#include "agent/collectors/procfs.h"
#include "common/status.h"

namespace vigie::agent {
namespace {

// node_network_{receive,transmit}_<column>_total{device} from /proc/net/dev, named after the
// file's own header as node_exporter does.
class NetdevCollector : public Collector {
 public:
  explicit NetdevCollector(const HostPaths& p) : file_(JoinPath(p.procfs, "/net/dev")) {}
  const char* name() const override { return "netdev"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    VIGIE_ASSIGN_OR_RETURN(std::string text, file_.Read());
    VIGIE_ASSIGN_OR_RETURN(std::vector<NetDevStats> devices, ParseNetDev(text));
    for (const NetDevStats& d : devices) {
      for (const auto& [column, value] : d.values) {
        out->Add(absl::StrCat("node_network_", column, "_total"), {{"device", d.device}}, value,
                 now_ms, MetricType::kCounter,
                 absl::StrCat("Network device statistic ", column, "."));
      }
    }
    return absl::OkStatus();
  }

 private:
  ProcFile file_;
};

}  // namespace

std::unique_ptr<Collector> NewNetdevCollector(const CollectorConfig& c) {
  return std::make_unique<NetdevCollector>(c.paths);
}

}  // namespace vigie::agent
