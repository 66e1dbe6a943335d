#include <sys/statvfs.h>

#include <set>

#include "absl/strings/str_cat.h"
#include "agent/collectors/collector.h"
#include "agent/collectors/procfs.h"
#include "common/status.h"
#include "re2/re2.h"

namespace vigie::agent {
namespace {

class FilesystemCollector : public Collector {
 public:
  FilesystemCollector(const HostPaths& p, const std::string& types, const std::string& points)
      : mounts_(JoinPath(p.procfs, "/mounts")),
        rootfs_(p.rootfs),
        types_exclude_(types.empty() ? kDefaultFsTypesExclude : types),
        points_exclude_(points.empty() ? kDefaultMountPointsExclude : points) {}
  const char* name() const override { return "filesystem"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    VIGIE_ASSIGN_OR_RETURN(std::string text, mounts_.Read());
    VIGIE_ASSIGN_OR_RETURN(std::vector<Mount> mounts, ParseMounts(text));
    std::set<std::string> seen;
    for (const Mount& m : mounts) {
      if (RE2::PartialMatch(m.fs_type, types_exclude_) ||
          RE2::PartialMatch(m.mount_point, points_exclude_) || !seen.insert(m.mount_point).second) {
        continue;
      }
      struct statvfs st;
      std::map<std::string, std::string> labels = {
          {"device", m.device}, {"fstype", m.fs_type}, {"mountpoint", m.mount_point}};
      // A filesystem that cannot be stat'ed (gone, permission) has only device_error = 1, as
      // in node_exporter.
      const bool error = statvfs(JoinPath(rootfs_, m.mount_point).c_str(), &st) != 0;
      out->Add("node_filesystem_device_error", labels, error ? 1 : 0, now_ms, MetricType::kGauge,
               "Whether an error occurred while getting statistics for the given device.");
      if (error) continue;
      const double bsize = static_cast<double>(st.f_frsize);
      auto add = [&](const char* name, double v, const char* help) {
        out->Add(name, labels, v, now_ms, MetricType::kGauge, help);
      };
      add("node_filesystem_size_bytes", bsize * st.f_blocks, "Filesystem size in bytes.");
      add("node_filesystem_free_bytes", bsize * st.f_bfree, "Filesystem free space in bytes.");
      add("node_filesystem_avail_bytes", bsize * st.f_bavail,
          "Filesystem space available to non-root users in bytes.");
      add("node_filesystem_files", st.f_files, "Filesystem total file nodes.");
      add("node_filesystem_files_free", st.f_ffree, "Filesystem total free file nodes.");
      add("node_filesystem_readonly", m.read_only ? 1 : 0, "Filesystem read-only status.");
    }
    return absl::OkStatus();
  }

 private:
  ProcFile mounts_;
  std::string rootfs_;
  RE2 types_exclude_, points_exclude_;
};

}  // namespace

const char kDefaultFsTypesExclude[] =
    "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|"
    "iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|"
    "erofs|sysfs|tracefs)$";
const char kDefaultMountPointsExclude[] =
    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";

std::unique_ptr<Collector> NewFilesystemCollector(const CollectorConfig& c) {
  return std::make_unique<FilesystemCollector>(c.paths, c.fs_types_exclude, c.mount_points_exclude);
}

}  // namespace vigie::agent
