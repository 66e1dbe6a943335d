#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/collectors/collector.h"
#include "agent/collectors/procfs.h"
#include "common/status.h"

namespace vigie::agent {
namespace {

// Pressure stall information (Linux 4.20+): node_pressure_* from /proc/pressure/{cpu,io,memory}.
// "some" is time at least one task waited, "full" time all non-idle tasks stalled.
class PressureCollector : public Collector {
 public:
  explicit PressureCollector(const HostPaths& p) : dir_(JoinPath(p.procfs, "/pressure")) {}
  const char* name() const override { return "pressure"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    for (const char* resource : {"cpu", "io", "memory", "irq"}) {
      const bool irq = std::string(resource) == "irq";
      absl::StatusOr<std::string> text = files_.Read(absl::StrCat(dir_, "/", resource));
      // A kernel without PSI has none of the files; irq came with 6.1.
      if (absl::IsNotFound(text.status())) {
        if (irq) break;
        return absl::UnavailableError("no pressure stall information (kernel without PSI)");
      }
      if (!text.ok()) return text.status();
      Pressure p;
      if (irq) {  // "full" only
        for (absl::string_view line : absl::StrSplit(*text, '\n')) {
          if (absl::StartsWith(line, "full ")) {
            VIGIE_ASSIGN_OR_RETURN(p, ParsePressure(absl::StrCat("some", line.substr(4))));
            out->Add("node_pressure_irq_stalled_seconds_total", {}, p.some_seconds, now_ms,
                     MetricType::kCounter,
                     "Total time in seconds no process could make progress due to IRQ.");
          }
        }
        continue;
      }
      VIGIE_ASSIGN_OR_RETURN(p, ParsePressure(*text));
      out->Add(
          absl::StrCat("node_pressure_", resource, "_waiting_seconds_total"), {}, p.some_seconds,
          now_ms, MetricType::kCounter,
          absl::StrCat("Total time in seconds that processes have waited for ", resource, "."));
      // node_exporter exports "full" for io and memory; for cpu the kernel's line is 0 or absent.
      if (p.full_seconds >= 0 && std::string(resource) != "cpu") {
        out->Add(absl::StrCat("node_pressure_", resource, "_stalled_seconds_total"), {},
                 p.full_seconds, now_ms, MetricType::kCounter,
                 absl::StrCat("Total time in seconds no process could make progress due to ",
                              resource, " congestion."));
      }
    }
    return absl::OkStatus();
  }

 private:
  std::string dir_;
  ProcFileSet files_;
};

}  // namespace

std::unique_ptr<Collector> NewPressureCollector(const CollectorConfig& c) {
  return std::make_unique<PressureCollector>(c.paths);
}

}  // namespace vigie::agent
