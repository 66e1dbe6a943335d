#include <sys/timex.h>
#include <time.h>

#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/collectors/collector.h"
#include "agent/collectors/procfs.h"
#include "common/status.h"

namespace vigie::agent {
namespace {

// node_time_seconds and node_time_zone_offset_seconds (node_exporter's "time"), and the
// kernel's clock discipline from adjtimex(2) (node_exporter's "timex").
class TimeCollector : public Collector {
 public:
  explicit TimeCollector(const HostPaths& p)
      : clocksources_(JoinPath(p.sysfs, "/devices/system/clocksource")) {}
  const char* name() const override { return "time"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    const double now = static_cast<double>(ts.tv_sec) + ts.tv_nsec / 1e9;
    out->Add("node_time_seconds", {}, now, now_ms, MetricType::kGauge,
             "System time in seconds since epoch (1970).");
    time_t t = ts.tv_sec;
    struct tm local;
    localtime_r(&t, &local);
    out->Add("node_time_zone_offset_seconds", {{"time_zone", local.tm_zone ? local.tm_zone : ""}},
             static_cast<double>(local.tm_gmtoff), now_ms, MetricType::kGauge,
             "System time zone offset in seconds.");
    for (int n = 0; n < 16; ++n) {
      const std::string dir = absl::StrCat(clocksources_, "/clocksource", n);
      absl::StatusOr<std::string> available = ReadProcFile(dir + "/available_clocksource");
      absl::StatusOr<std::string> current = ReadProcFile(dir + "/current_clocksource");
      if (!available.ok() || !current.ok()) break;
      const std::string device = absl::StrCat(n);
      for (absl::string_view c :
           absl::StrSplit(*available, absl::ByAnyChar(" \n"), absl::SkipEmpty())) {
        out->Add("node_time_clocksource_available_info",
                 {{"device", device}, {"clocksource", std::string(c)}}, 1, now_ms,
                 MetricType::kGauge,
                 "Available clocksources read from '/sys/devices/system/clocksource'.");
      }
      out->Add(
          "node_time_clocksource_current_info",
          {{"device", device}, {"clocksource", std::string(absl::StripAsciiWhitespace(*current))}},
          1, now_ms, MetricType::kGauge,
          "Current clocksource read from '/sys/devices/system/clocksource'.");
    }
    return absl::OkStatus();
  }

 private:
  std::string clocksources_;
};

class TimexCollector : public Collector {
 public:
  const char* name() const override { return "timex"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    struct timex tx = {};
    const int state = adjtimex(&tx);
    if (state < 0) return absl::UnavailableError("adjtimex failed");
    // With STA_NANO the offset and time fields are in nanoseconds, else microseconds.
    const double divisor = (tx.status & STA_NANO) ? 1e9 : 1e6;
    auto add = [&](const char* name, double v, const char* help) {
      out->Add(name, {}, v, now_ms, MetricType::kGauge, help);
    };
    add("node_timex_sync_status", state == TIME_ERROR ? 0 : 1,
        "Is clock synchronized to a reliable server (1 = yes, 0 = no).");
    add("node_timex_offset_seconds", static_cast<double>(tx.offset) / divisor,
        "Time offset in between local system and reference clock.");
    // freq is in units of 2^-16 ppm.
    add("node_timex_frequency_adjustment_ratio", 1 + static_cast<double>(tx.freq) / 65536e6,
        "Local clock frequency adjustment.");
    add("node_timex_maxerror_seconds", static_cast<double>(tx.maxerror) / 1e6,
        "Maximum error in seconds.");
    add("node_timex_estimated_error_seconds", static_cast<double>(tx.esterror) / 1e6,
        "Estimated error in seconds.");
    add("node_timex_status", static_cast<double>(tx.status), "Value of the status array bits.");
    add("node_timex_loop_time_constant", static_cast<double>(tx.constant),
        "Phase-locked loop time constant.");
    add("node_timex_tick_seconds", static_cast<double>(tx.tick) / 1e6,
        "Seconds between clock ticks.");
    add("node_timex_tai_offset_seconds", static_cast<double>(tx.tai),
        "International Atomic Time (TAI) offset.");
    add("node_timex_pps_frequency_hertz", static_cast<double>(tx.ppsfreq) / 65536e6,
        "Pulse per second frequency.");
    add("node_timex_pps_jitter_seconds", static_cast<double>(tx.jitter) / divisor,
        "Pulse per second jitter.");
    add("node_timex_pps_shift_seconds", static_cast<double>(tx.shift),
        "Pulse per second interval duration.");
    add("node_timex_pps_stability_hertz", static_cast<double>(tx.stabil) / 65536e6,
        "Pulse per second stability, average of recent frequency changes.");
    for (const auto& [name, v, help] :
         {std::tuple{"node_timex_pps_jitter_total", tx.jitcnt,
                     "Pulse per second count of jitter limit exceeded events."},
          std::tuple{"node_timex_pps_calibration_total", tx.calcnt,
                     "Pulse per second count of calibration intervals."},
          std::tuple{"node_timex_pps_error_total", tx.errcnt,
                     "Pulse per second count of calibration errors."},
          std::tuple{"node_timex_pps_stability_exceeded_total", tx.stbcnt,
                     "Pulse per second count of stability limit exceeded events."}}) {
      out->Add(name, {}, static_cast<double>(v), now_ms, MetricType::kCounter, help);
    }
    return absl::OkStatus();
  }
};

}  // namespace

std::unique_ptr<Collector> NewTimeCollector(const CollectorConfig& c) {
  return std::make_unique<TimeCollector>(c.paths);
}
std::unique_ptr<Collector> NewTimexCollector(const CollectorConfig&) {
  return std::make_unique<TimexCollector>();
}

}  // namespace vigie::agent
