#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/collectors/collector.h"
#include "agent/collectors/procfs.h"
#include "common/status.h"
#include "re2/re2.h"

namespace vigie::agent {

const char kDefaultDiskDevicesExclude[] = "^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\\d+n\\d+p)\\d+$";

namespace {

struct Field {
  const char* name;
  double scale;  // to node_exporter's unit (sectors of 512 bytes, milliseconds)
  MetricType type;
  const char* help;
};

// The kernel's order (Documentation/admin-guide/iostats.rst), after the device name.
constexpr Field kFields[] = {
    {"node_disk_reads_completed_total", 1, MetricType::kCounter,
     "The total number of reads completed successfully."},
    {"node_disk_reads_merged_total", 1, MetricType::kCounter, "The total number of reads merged."},
    {"node_disk_read_bytes_total", 512, MetricType::kCounter,
     "The total number of bytes read successfully."},
    {"node_disk_read_time_seconds_total", 0.001, MetricType::kCounter,
     "The total number of seconds spent by all reads."},
    {"node_disk_writes_completed_total", 1, MetricType::kCounter,
     "The total number of writes completed successfully."},
    {"node_disk_writes_merged_total", 1, MetricType::kCounter, "The number of writes merged."},
    {"node_disk_written_bytes_total", 512, MetricType::kCounter,
     "The total number of bytes written successfully."},
    {"node_disk_write_time_seconds_total", 0.001, MetricType::kCounter,
     "This is the total number of seconds spent by all writes."},
    {"node_disk_io_now", 1, MetricType::kGauge, "The number of I/Os currently in progress."},
    {"node_disk_io_time_seconds_total", 0.001, MetricType::kCounter,
     "Total seconds spent doing I/Os."},
    {"node_disk_io_time_weighted_seconds_total", 0.001, MetricType::kCounter,
     "The weighted # of seconds spent doing I/Os."},
    {"node_disk_discards_completed_total", 1, MetricType::kCounter,
     "The total number of discards completed successfully."},
    {"node_disk_discards_merged_total", 1, MetricType::kCounter,
     "The total number of discards merged."},
    {"node_disk_discarded_sectors_total", 1, MetricType::kCounter,
     "The total number of sectors discarded successfully."},
    {"node_disk_discard_time_seconds_total", 0.001, MetricType::kCounter,
     "This is the total number of seconds spent by all discards."},
    {"node_disk_flush_requests_total", 1, MetricType::kCounter,
     "The total number of flush requests completed successfully"},
    {"node_disk_flush_requests_time_seconds_total", 0.001, MetricType::kCounter,
     "This is the total number of seconds spent by all flush requests."},
};

class DiskstatsCollector : public Collector {
 public:
  explicit DiskstatsCollector(const HostPaths& p)
      : file_(JoinPath(p.procfs, "/diskstats")),
        udev_(JoinPath(p.rootfs, "/run/udev/data")),
        exclude_(kDefaultDiskDevicesExclude) {}
  const char* name() const override { return "diskstats"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    VIGIE_ASSIGN_OR_RETURN(std::string text, file_.Read());
    VIGIE_ASSIGN_OR_RETURN(std::vector<DiskStats> disks, ParseDiskstats(text));
    for (const DiskStats& d : disks) {
      if (RE2::PartialMatch(d.device, exclude_)) continue;
      // node_disk_info: identity from udev's database where there is one (empty otherwise).
      std::map<std::string, std::string> udev;
      if (absl::StatusOr<std::string> db =
              ReadProcFile(absl::StrCat(udev_, "/b", d.major, ":", d.minor));
          db.ok()) {
        for (absl::string_view line : absl::StrSplit(*db, '\n')) {
          if (!absl::ConsumePrefix(&line, "E:")) continue;
          std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
          udev.insert(kv);
        }
      }
      std::string serial = udev["SCSI_IDENT_SERIAL"];
      if (serial.empty()) serial = udev["ID_SERIAL_SHORT"];
      if (serial.empty()) serial = udev["ID_SERIAL"];
      out->Add("node_disk_info",
               {{"device", d.device},
                {"major", d.major},
                {"minor", d.minor},
                {"path", udev["ID_PATH"]},
                {"wwn", udev["ID_WWN"]},
                {"model", udev["ID_MODEL"]},
                {"serial", serial},
                {"revision", udev["ID_REVISION"]}},
               1, now_ms, MetricType::kGauge, "Info of /sys/block/<block_device>.");
      for (size_t i = 0; i < d.fields.size() && i < std::size(kFields); ++i) {
        const Field& f = kFields[i];
        out->Add(f.name, {{"device", d.device}}, d.fields[i] * f.scale, now_ms, f.type, f.help);
      }
    }
    return absl::OkStatus();
  }

 private:
  ProcFile file_;
  std::string udev_;
  RE2 exclude_;
};

}  // namespace

std::unique_ptr<Collector> NewDiskstatsCollector(const CollectorConfig& c) {
  return std::make_unique<DiskstatsCollector>(c.paths);
}

}  // namespace vigie::agent
