#include <map>

#include "absl/strings/str_cat.h"
#include "agent/collectors/collector.h"
#include "agent/collectors/procfs.h"
#include "common/status.h"
#include "re2/re2.h"

namespace vigie::agent {
namespace {

// node_vmstat_<field> from /proc/vmstat, node_exporter's default field set.
class VmstatCollector : public Collector {
 public:
  explicit VmstatCollector(const HostPaths& p)
      : file_(JoinPath(p.procfs, "/vmstat")), fields_("^(oom_kill|pgpg|pswp|pg.*fault).*") {}
  const char* name() const override { return "vmstat"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    VIGIE_ASSIGN_OR_RETURN(std::string text, file_.Read());
    VIGIE_ASSIGN_OR_RETURN(auto values, ParseNameValueLines(text));
    for (const auto& [field, value] : values) {
      if (!Wanted(field)) continue;
      out->Add(absl::StrCat("node_vmstat_", field), {}, value, now_ms, MetricType::kUntyped,
               absl::StrCat("/proc/vmstat information field ", field, "."));
    }
    return absl::OkStatus();
  }

 private:
  // The kernel's field set does not change: match each name once.
  bool Wanted(const std::string& name) {
    auto it = wanted_.find(name);
    if (it != wanted_.end()) return it->second;
    const bool wanted = RE2::PartialMatch(name, fields_);
    if (wanted_.size() < 4096) wanted_.emplace(name, wanted);
    return wanted;
  }

  ProcFile file_;
  RE2 fields_;
  std::map<std::string, bool> wanted_;
};

}  // namespace

std::unique_ptr<Collector> NewVmstatCollector(const CollectorConfig& c) {
  return std::make_unique<VmstatCollector>(c.paths);
}

}  // namespace vigie::agent
