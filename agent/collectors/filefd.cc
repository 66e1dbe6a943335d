#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/collectors/collector.h"
#include "agent/collectors/procfs.h"
#include "common/status.h"

namespace vigie::agent {
namespace {

// node_filefd_allocated and node_filefd_maximum from /proc/sys/fs/file-nr.
class FilefdCollector : public Collector {
 public:
  explicit FilefdCollector(const HostPaths& p) : file_(JoinPath(p.procfs, "/sys/fs/file-nr")) {}
  const char* name() const override { return "filefd"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    VIGIE_ASSIGN_OR_RETURN(std::string text, file_.Read());
    std::vector<absl::string_view> f =
        absl::StrSplit(text, absl::ByAnyChar(" \t\n"), absl::SkipEmpty());
    double allocated, maximum;
    if (f.size() != 3 || !absl::SimpleAtod(f[0], &allocated) || !absl::SimpleAtod(f[2], &maximum)) {
      return absl::InvalidArgumentError(absl::StrCat(file_.path(), ": expected three numbers"));
    }
    out->Add("node_filefd_allocated", {}, allocated, now_ms, MetricType::kGauge,
             "File descriptor statistics: allocated.");
    out->Add("node_filefd_maximum", {}, maximum, now_ms, MetricType::kGauge,
             "File descriptor statistics: maximum.");
    return absl::OkStatus();
  }

 private:
  ProcFile file_;
};

}  // namespace

std::unique_ptr<Collector> NewFilefdCollector(const CollectorConfig& c) {
  return std::make_unique<FilefdCollector>(c.paths);
}

}  // namespace vigie::agent
