#include <dirent.h>
#include <limits.h>
#include <stdlib.h>

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "agent/collectors/collector.h"
#include "agent/collectors/procfs.h"
#include "common/status.h"
#include "re2/re2.h"

namespace vigie::agent {

std::string HwmonCleanName(absl::string_view s) {
  std::string out = absl::AsciiStrToLower(s);
  for (char& c : out) {
    if (!absl::ascii_isalnum(c) && c != ':' && c != '_') c = '_';
  }
  size_t b = out.find_first_not_of('_'), e = out.find_last_not_of('_');
  return b == std::string::npos ? "" : out.substr(b, e - b + 1);
}

namespace {

std::string Basename(absl::string_view path) {
  size_t slash = path.rfind('/');
  return std::string(slash == absl::string_view::npos ? path : path.substr(slash + 1));
}

struct Unit {
  const char* type;         // sensor type prefix in sysfs
  const char* metric_type;  // in the metric's name
  const char* suffix;       // metric unit suffix
  double scale;             // sysfs unit -> metric unit
};
// The common sensor types and node_exporter's units for them.
constexpr Unit kUnits[] = {
    {"temp", "temp", "celsius", 0.001}, {"in", "in", "volts", 0.001},
    {"cpu", "in", "volts", 0.001},      {"curr", "curr", "amps", 0.001},
    {"power", "power", "watt", 1e-6},   {"fan", "fan", "rpm", 1},
};

// node_hwmon_* from <sysfs>/class/hwmon/hwmon*/: temperatures, voltages, currents, power and
// fans with node_exporter's chip and sensor labels, node_hwmon_chip_names and
// node_hwmon_sensor_label. A host without hwmon exports nothing and succeeds.
class HwmonCollector : public Collector {
 public:
  explicit HwmonCollector(const HostPaths& p) : dir_(JoinPath(p.sysfs, "/class/hwmon")) {}
  const char* name() const override { return "hwmon"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    DIR* dir = opendir(dir_.c_str());
    if (dir == nullptr) return absl::OkStatus();  // no hwmon on this host (VMs, containers)
    std::vector<std::string> hwmons;
    while (dirent* e = readdir(dir)) {
      if (absl::StartsWith(e->d_name, "hwmon")) hwmons.emplace_back(e->d_name);
    }
    closedir(dir);
    std::sort(hwmons.begin(), hwmons.end());
    for (const std::string& h : hwmons) CollectChip(absl::StrCat(dir_, "/", h), h, now_ms, out);
    return absl::OkStatus();
  }

 private:
  static std::string Read(const std::string& path) {
    absl::StatusOr<std::string> v = ReadProcFile(path);
    return v.ok() ? std::string(absl::StripAsciiWhitespace(*v)) : std::string();
  }

  // node_exporter's chip label: "<bus dir>_<device dir>" of the resolved device link, else the
  // name file, else hwmonN.
  static std::string ChipName(const std::string& path, const std::string& hwmon) {
    char resolved[PATH_MAX];
    if (realpath((path + "/device").c_str(), resolved) != nullptr) {
      std::string dev = resolved;
      std::string parent = dev.substr(0, dev.rfind('/'));
      return HwmonCleanName(Basename(parent)) + "_" + HwmonCleanName(Basename(dev));
    }
    std::string name = HwmonCleanName(Read(path + "/name"));
    return name.empty() ? hwmon : name;
  }

  void CollectChip(const std::string& path, const std::string& hwmon, int64_t now_ms,
                   Collection* out) {
    const std::string chip = ChipName(path, hwmon);
    if (std::string name = Read(path + "/name"); !name.empty()) {
      out->Add("node_hwmon_chip_names", {{"chip", chip}, {"chip_name", HwmonCleanName(name)}}, 1,
               now_ms, MetricType::kGauge, "Annotation metric for human-readable chip names");
    }
    // Sensor files may sit in the hwmon directory or (older drivers) in device/.
    static const RE2 kFile("([a-z]+)(\\d+)_([a-z_]+)");
    for (const std::string& d : {path, path + "/device"}) {
      DIR* dir = opendir(d.c_str());
      if (dir == nullptr) continue;
      std::vector<std::string> files;
      while (dirent* e = readdir(dir)) files.emplace_back(e->d_name);
      closedir(dir);
      std::sort(files.begin(), files.end());
      for (const std::string& f : files) {
        std::string type, num, prop;
        if (!RE2::FullMatch(f, kFile, &type, &num, &prop)) continue;
        const std::string sensor = type + num;
        std::map<std::string, std::string> labels = {{"chip", chip}, {"sensor", sensor}};
        if (prop == "label") {
          labels["label"] = HwmonCleanName(Read(d + "/" + f));
          out->Add("node_hwmon_sensor_label", labels, 1, now_ms, MetricType::kGauge,
                   "Label for given chip and sensor");
          continue;
        }
        const Unit* unit = nullptr;
        for (const Unit& u : kUnits) {
          if (type == u.type) unit = &u;
        }
        double v;
        if (unit == nullptr || !absl::SimpleAtod(Read(d + "/" + f), &v)) continue;
        // node_exporter names voltages node_hwmon_in_* whether the file says "in" or "cpu".
        const absl::string_view kind = unit->metric_type;
        std::string metric;
        if (absl::EndsWith(prop, "alarm") || absl::EndsWith(prop, "fault")) {
          metric = absl::StrCat("node_hwmon_", kind, "_", prop);  // a flag, unscaled
        } else if (prop == "input") {
          metric = absl::StrCat("node_hwmon_", kind, "_", unit->suffix);
          v *= unit->scale;
        } else {
          metric = absl::StrCat("node_hwmon_", kind, "_", prop, "_", unit->suffix);
          v *= unit->scale;
        }
        out->Add(metric, labels, v, now_ms, MetricType::kGauge,
                 absl::StrCat("Hardware monitor for ", type, " (", prop, ")"));
      }
    }
  }

  std::string dir_;
};

}  // namespace

std::unique_ptr<Collector> NewHwmonCollector(const CollectorConfig& c) {
  return std::make_unique<HwmonCollector>(c.paths);
}

}  // namespace vigie::agent
