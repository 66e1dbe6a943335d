#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/collectors/collector.h"
#include "common/status.h"

namespace vigie::agent {
namespace {

// node_softnet_{processed,dropped,times_squeezed}_total{cpu} from /proc/net/softnet_stat (one
// line of hexadecimal counters per CPU).
class SoftnetCollector : public Collector {
 public:
  explicit SoftnetCollector(const HostPaths& p) : file_(JoinPath(p.procfs, "/net/softnet_stat")) {}
  const char* name() const override { return "softnet"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    VIGIE_ASSIGN_OR_RETURN(std::string text, file_.Read());
    int cpu = 0;
    for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
      std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
      uint64_t processed, dropped, squeezed;
      if (f.size() < 3 || !absl::SimpleHexAtoi(f[0], &processed) ||
          !absl::SimpleHexAtoi(f[1], &dropped) || !absl::SimpleHexAtoi(f[2], &squeezed)) {
        return absl::InvalidArgumentError(absl::StrCat(file_.path(), ": malformed line ", cpu + 1));
      }
      const std::string c = absl::StrCat(cpu++);
      out->Add("node_softnet_processed_total", {{"cpu", c}}, static_cast<double>(processed), now_ms,
               MetricType::kCounter, "Number of processed packets");
      out->Add("node_softnet_dropped_total", {{"cpu", c}}, static_cast<double>(dropped), now_ms,
               MetricType::kCounter, "Number of dropped packets");
      out->Add("node_softnet_times_squeezed_total", {{"cpu", c}}, static_cast<double>(squeezed),
               now_ms, MetricType::kCounter, "Number of times processing packets ran out of quota");
    }
    return absl::OkStatus();
  }

 private:
  ProcFile file_;
};

// node_udp_queues{ip,queue}: bytes queued in UDP sockets, from /proc/net/udp{,6}.
class UdpQueuesCollector : public Collector {
 public:
  explicit UdpQueuesCollector(const HostPaths& p) : dir_(JoinPath(p.procfs, "/net")) {}
  const char* name() const override { return "udp_queues"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    for (const auto& [file, ip] : {std::pair{"udp", "v4"}, std::pair{"udp6", "v6"}}) {
      absl::StatusOr<std::string> text = files_.Read(absl::StrCat(dir_, "/", file));
      if (absl::IsNotFound(text.status())) continue;
      if (!text.ok()) return text.status();
      double tx = 0, rx = 0;
      bool header = true;
      for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
        if (header) {
          header = false;
          continue;
        }
        std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
        if (f.size() < 5) continue;
        std::pair<absl::string_view, absl::string_view> q = absl::StrSplit(f[4], ':');
        uint64_t t, r;
        if (absl::SimpleHexAtoi(q.first, &t) && absl::SimpleHexAtoi(q.second, &r)) {
          tx += static_cast<double>(t);
          rx += static_cast<double>(r);
        }
      }
      for (const auto& [queue, v] : {std::pair{"tx", tx}, std::pair{"rx", rx}}) {
        out->Add("node_udp_queues", {{"ip", ip}, {"queue", queue}}, v, now_ms, MetricType::kGauge,
                 "Number of allocated memory in the kernel for UDP datagrams in bytes.");
      }
    }
    return absl::OkStatus();
  }

 private:
  std::string dir_;
  ProcFileSet files_;
};

// node_selinux_enabled (1 if SELinux is on), from <sysfs>/fs/selinux.
class SelinuxCollector : public Collector {
 public:
  explicit SelinuxCollector(const HostPaths& p) : path_(JoinPath(p.sysfs, "/fs/selinux/enforce")) {}
  const char* name() const override { return "selinux"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    absl::StatusOr<std::string> enforce = ReadProcFile(path_);
    out->Add("node_selinux_enabled", {}, enforce.ok() ? 1 : 0, now_ms, MetricType::kGauge,
             "SELinux is enabled, 1 is true, 0 is false");
    if (enforce.ok()) {
      out->Add("node_selinux_current_mode", {}, absl::StartsWith(*enforce, "1") ? 1 : 0, now_ms,
               MetricType::kGauge, "SELinux current mode, 1 is enforcing, 0 is permissive");
    }
    return absl::OkStatus();
  }

 private:
  std::string path_;
};

}  // namespace

std::unique_ptr<Collector> NewSoftnetCollector(const CollectorConfig& c) {
  return std::make_unique<SoftnetCollector>(c.paths);
}
std::unique_ptr<Collector> NewUdpQueuesCollector(const CollectorConfig& c) {
  return std::make_unique<UdpQueuesCollector>(c.paths);
}
std::unique_ptr<Collector> NewSelinuxCollector(const CollectorConfig& c) {
  return std::make_unique<SelinuxCollector>(c.paths);
}

}  // namespace vigie::agent
