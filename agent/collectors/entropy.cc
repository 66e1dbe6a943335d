#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "agent/collectors/collector.h"
#include "agent/collectors/procfs.h"
#include "common/status.h"

namespace vigie::agent {
namespace {

// node_entropy_available_bits and node_entropy_pool_size_bits.
class EntropyCollector : public Collector {
 public:
  explicit EntropyCollector(const HostPaths& p) : dir_(JoinPath(p.procfs, "/sys/kernel/random")) {}
  const char* name() const override { return "entropy"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    for (const auto& [file, metric, help] :
         {std::tuple{"entropy_avail", "node_entropy_available_bits", "Bits of available entropy."},
          std::tuple{"poolsize", "node_entropy_pool_size_bits", "Bits of entropy pool."}}) {
      VIGIE_ASSIGN_OR_RETURN(std::string text, files_.Read(absl::StrCat(dir_, "/", file)));
      double v;
      if (!absl::SimpleAtod(absl::StripAsciiWhitespace(text), &v)) {
        return absl::InvalidArgumentError(absl::StrCat(dir_, "/", file, ": not a number"));
      }
      out->Add(metric, {}, v, now_ms, MetricType::kGauge, help);
    }
    return absl::OkStatus();
  }

 private:
  std::string dir_;
  ProcFileSet files_;
};

}  // namespace

std::unique_ptr<Collector> NewEntropyCollector(const CollectorConfig& c) {
  return std::make_unique<EntropyCollector>(c.paths);
}

}  // namespace vigie::agent
