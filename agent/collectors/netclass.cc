#include <dirent.h>

#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "agent/collectors/collector.h"
#include "agent/collectors/procfs.h"
#include "common/status.h"

namespace vigie::agent {
namespace {

// node_network_up, node_network_info and the numeric attributes people alert on, from
// <sysfs>/class/net/<device>/ (node_exporter's "netclass").
class NetclassCollector : public Collector {
 public:
  explicit NetclassCollector(const HostPaths& p) : dir_(JoinPath(p.sysfs, "/class/net")) {}
  const char* name() const override { return "netclass"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    DIR* dir = opendir(dir_.c_str());
    if (dir == nullptr) return absl::UnavailableError(absl::StrCat(dir_, ": cannot open"));
    std::vector<std::string> devices;
    while (dirent* e = readdir(dir)) {
      if (e->d_name[0] != '.') devices.emplace_back(e->d_name);
    }
    closedir(dir);
    std::sort(devices.begin(), devices.end());
    // Identity attributes (address, ifindex, type, ...) hardly ever change: they are read
    // again once a minute, the state and counters every round. Halves the files opened.
    const bool refresh = now_ms - identity_read_ms_ >= 60000 || now_ms < identity_read_ms_;
    if (refresh) identity_read_ms_ = now_ms;
    std::map<std::string, std::map<std::string, std::string>> identity;
    for (const std::string& dev : devices) {
      const std::string base = absl::StrCat(dir_, "/", dev, "/");
      auto read_now = [&](const char* attr) -> std::string {
        // Some attributes fail to read (EINVAL) while the link is down: left out then.
        absl::StatusOr<std::string> v = files_.Read(base + attr);
        return v.ok() ? std::string(absl::StripAsciiWhitespace(*v)) : std::string();
      };
      auto cached = identity_.find(dev);
      std::map<std::string, std::string>& ids = identity[dev];
      if (!refresh && cached != identity_.end()) ids = std::move(cached->second);
      auto read = [&](const char* attr) -> std::string {
        if (!IsIdentity(attr)) return read_now(attr);
        auto it = ids.find(attr);
        if (it == ids.end()) it = ids.emplace(attr, read_now(attr)).first;
        return it->second;
      };
      const std::string operstate = read("operstate");
      out->Add("node_network_up", {{"device", dev}}, operstate == "up" ? 1 : 0, now_ms,
               MetricType::kGauge, "Value is 1 if operstate is 'up', 0 otherwise.");
      int64_t flags = 0;
      const bool have_flags = absl::SimpleHexAtoi(read("flags"), &flags);  // e.g. "0x1003"
      if (have_flags) {
        out->Add("node_network_flags", {{"device", dev}}, static_cast<double>(flags), now_ms,
                 MetricType::kGauge, "Network device property: flags.");
      }
      if (int64_t dev_id; absl::SimpleHexAtoi(read("dev_id"), &dev_id)) {
        out->Add("node_network_device_id", {{"device", dev}}, static_cast<double>(dev_id), now_ms,
                 MetricType::kGauge, "Network device property: dev_id.");
      }
      out->Add("node_network_info",
               {{"device", dev},
                {"address", read("address")},
                {"broadcast", read("broadcast")},
                {"duplex", read("duplex")},
                {"operstate", operstate},
                {"adminstate", !have_flags   ? "unknown"
                               : (flags & 1) ? "up"
                                             : "down"},  // IFF_UP
                {"ifalias", read("ifalias")}},
               1, now_ms, MetricType::kGauge, "Non-numeric data of <iface>, value is always 1.");
      struct Numeric {
        const char* attr;
        const char* metric;
        double scale;
        MetricType type;
      };
      static constexpr Numeric kNumeric[] = {
          {"carrier", "node_network_carrier", 1, MetricType::kGauge},
          {"carrier_changes", "node_network_carrier_changes_total", 1, MetricType::kCounter},
          {"carrier_up_count", "node_network_carrier_up_changes_total", 1, MetricType::kCounter},
          {"carrier_down_count", "node_network_carrier_down_changes_total", 1,
           MetricType::kCounter},
          {"mtu", "node_network_mtu_bytes", 1, MetricType::kGauge},
          {"speed", "node_network_speed_bytes", 1e6 / 8, MetricType::kGauge},
          {"tx_queue_len", "node_network_transmit_queue_length", 1, MetricType::kGauge},
          {"ifindex", "node_network_iface_id", 1, MetricType::kGauge},
          {"iflink", "node_network_iface_link", 1, MetricType::kGauge},
          {"type", "node_network_protocol_type", 1, MetricType::kGauge},
          {"dormant", "node_network_dormant", 1, MetricType::kGauge},
          {"addr_assign_type", "node_network_address_assign_type", 1, MetricType::kGauge},
          {"link_mode", "node_network_iface_link_mode", 1, MetricType::kGauge},
          {"name_assign_type", "node_network_name_assign_type", 1, MetricType::kGauge},
          {"netdev_group", "node_network_net_dev_group", 1, MetricType::kGauge},
      };
      for (const Numeric& n : kNumeric) {
        double v;
        if (!absl::SimpleAtod(read(n.attr), &v)) continue;  // absent or unreadable: skipped
        out->Add(n.metric, {{"device", dev}}, v * n.scale, now_ms, n.type,
                 absl::StrCat("Network device property: ", n.attr, "."));
      }
    }
    identity_.swap(identity);  // devices that went away are forgotten
    return absl::OkStatus();
  }

 private:
  static bool IsIdentity(absl::string_view attr) {
    for (const char* a : {"address", "broadcast", "ifalias", "dev_id", "ifindex", "iflink", "type",
                          "addr_assign_type", "name_assign_type", "netdev_group", "link_mode"}) {
      if (attr == a) return true;
    }
    return false;
  }

  std::string dir_;
  ProcFileSet files_{256};  // the attributes of a dozen devices kept open; beyond, opened
  int64_t identity_read_ms_ = 0;
  std::map<std::string, std::map<std::string, std::string>> identity_;  // by device
};

}  // namespace

std::unique_ptr<Collector> NewNetclassCollector(const CollectorConfig& c) {
  return std::make_unique<NetclassCollector>(c.paths);
}

}  // namespace vigie::agent
