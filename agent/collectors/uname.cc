#include <sys/utsname.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/collectors/collector.h"
#include "agent/collectors/procfs.h"
#include "common/status.h"

namespace vigie::agent {
namespace {

// node_uname_info{sysname,release,version,machine,nodename,domainname} = 1.
class UnameCollector : public Collector {
 public:
  const char* name() const override { return "uname"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    struct utsname u;
    if (uname(&u) != 0) return absl::UnavailableError("uname failed");
    out->Add("node_uname_info",
             {{"sysname", u.sysname},
              {"release", u.release},
              {"version", u.version},
              {"machine", u.machine},
              {"nodename", u.nodename},
              {"domainname", u.domainname}},
             1, now_ms, MetricType::kGauge,
             "Labeled system information as provided by the uname system call.");
    return absl::OkStatus();
  }
};

// node_os_info{...} = 1 and node_os_version{id,id_like,name} from <rootfs>/etc/os-release.
class OsCollector : public Collector {
 public:
  explicit OsCollector(const HostPaths& p) : rootfs_(p.rootfs) {}
  const char* name() const override { return "os"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    absl::StatusOr<std::string> text = ReadProcFile(JoinPath(rootfs_, "/etc/os-release"));
    if (!text.ok()) text = ReadProcFile(JoinPath(rootfs_, "/usr/lib/os-release"));
    if (!text.ok()) return text.status();
    std::map<std::string, std::string> kv;
    for (absl::string_view line : absl::StrSplit(*text, '\n')) {
      std::pair<absl::string_view, absl::string_view> p =
          absl::StrSplit(line, absl::MaxSplits('=', 1));
      absl::string_view v = absl::StripAsciiWhitespace(p.second);
      if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front()) {
        v = v.substr(1, v.size() - 2);
      }
      if (!p.first.empty()) kv[std::string(p.first)] = std::string(v);
    }
    std::map<std::string, std::string> labels;
    for (const char* key :
         {"BUILD_ID", "ID", "ID_LIKE", "IMAGE_ID", "IMAGE_VERSION", "NAME", "PRETTY_NAME",
          "VARIANT", "VARIANT_ID", "VERSION", "VERSION_CODENAME", "VERSION_ID"}) {
      labels[absl::AsciiStrToLower(key)] = kv[key];
    }
    out->Add("node_os_info", labels, 1, now_ms, MetricType::kGauge,
             "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, "
             "image_version, name, pretty_name, variant, variant_id, version, version_codename, "
             "version_id.");
    // The leading "major.minor" of VERSION_ID.
    std::vector<absl::string_view> parts = absl::StrSplit(kv["VERSION_ID"], '.');
    double version = 0;
    std::string head = parts.empty() ? "" : std::string(parts[0]);
    if (parts.size() > 1) absl::StrAppend(&head, ".", parts[1]);
    if (absl::SimpleAtod(head, &version) && version != 0) {
      out->Add("node_os_version",
               {{"id", kv["ID"]}, {"id_like", kv["ID_LIKE"]}, {"name", kv["NAME"]}}, version,
               now_ms, MetricType::kGauge,
               "Metric containing the major.minor part of the OS version.");
    }
    return absl::OkStatus();
  }

 private:
  std::string rootfs_;
};

}  // namespace

std::unique_ptr<Collector> NewUnameCollector(const CollectorConfig&) {
  return std::make_unique<UnameCollector>();
}
std::unique_ptr<Collector> NewOsCollector(const CollectorConfig& c) {
  return std::make_unique<OsCollector>(c.paths);
}

}  // namespace vigie::agent
