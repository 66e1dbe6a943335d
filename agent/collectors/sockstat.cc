#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/collectors/collector.h"
#include "agent/collectors/procfs.h"
#include "common/status.h"

namespace vigie::agent {
namespace {

// node_sockstat_<PROTO>_<field> from /proc/net/sockstat and sockstat6; "mem" (pages) also as
// node_sockstat_<PROTO>_mem_bytes.
class SockstatCollector : public Collector {
 public:
  explicit SockstatCollector(const HostPaths& p)
      : dir_(JoinPath(p.procfs, "/net")), page_(static_cast<double>(sysconf(_SC_PAGESIZE))) {}
  const char* name() const override { return "sockstat"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    for (const char* file : {"sockstat", "sockstat6"}) {
      absl::StatusOr<std::string> text = files_.Read(absl::StrCat(dir_, "/", file));
      if (absl::IsNotFound(text.status())) continue;  // no IPv6
      if (!text.ok()) return text.status();
      VIGIE_ASSIGN_OR_RETURN(auto values, ParseSockstat(*text));
      for (const auto& [field, value] : values) {
        const std::string name = absl::StrCat("node_sockstat_", field);
        out->Add(name, {}, value, now_ms, MetricType::kGauge,
                 absl::StrCat("Number of ", field, " (", file, ")."));
        if (absl::EndsWith(field, "_mem")) {
          out->Add(name + "_bytes", {}, value * page_, now_ms, MetricType::kGauge,
                   absl::StrCat("Bytes of ", field, " (", file, ")."));
        }
      }
    }
    return absl::OkStatus();
  }

 private:
  std::string dir_;
  ProcFileSet files_;
  double page_;
};

}  // namespace

std::unique_ptr<Collector> NewSockstatCollector(const CollectorConfig& c) {
  return std::make_unique<SockstatCollector>(c.paths);
}

}  // namespace vigie::agent
