#include "absl/strings/str_cat.h"
#include "agent/collectors/collector.h"
#include "agent/collectors/procfs.h"
#include "common/status.h"

namespace vigie::agent {
namespace {

class MemoryCollector : public Collector {
 public:
  explicit MemoryCollector(const HostPaths& p) : file_(JoinPath(p.procfs, "/meminfo")) {}
  const char* name() const override { return "meminfo"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    VIGIE_ASSIGN_OR_RETURN(std::string text, file_.Read());
    VIGIE_ASSIGN_OR_RETURN(auto values, ParseMeminfo(text));
    for (const auto& [field, v] : values) {
      out->Add(absl::StrCat("node_memory_", field, v.bytes ? "_bytes" : ""), {}, v.value, now_ms,
               MetricType::kGauge, absl::StrCat("Memory information field ", field, "."));
    }
    return absl::OkStatus();
  }

 private:
  ProcFile file_;
};

}  // namespace

std::unique_ptr<Collector> NewMeminfoCollector(const CollectorConfig& c) {
  return std::make_unique<MemoryCollector>(c.paths);
}

}  // namespace vigie::agent
