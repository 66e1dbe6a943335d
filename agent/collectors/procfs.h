// Parsers for the /proc files the host collectors read. Pure functions over file contents so
// tests run on fixture files captured from real hosts.
#ifndef VIGIE_AGENT_COLLECTORS_PROCFS_H_
#define VIGIE_AGENT_COLLECTORS_PROCFS_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace vigie::agent {

struct CpuTimes {
  std::string cpu;  // "0", "1", ...
  // Seconds per mode: user, nice, system, idle, iowait, irq, softirq, steal.
  std::map<std::string, double> seconds;
  // guest and guest_nice (already included in user and nice by the kernel).
  std::map<std::string, double> guest_seconds;
};

// /proc/stat; `ticks_per_second` is sysconf(_SC_CLK_TCK).
absl::StatusOr<std::vector<CpuTimes>> ParseProcStat(absl::string_view text,
                                                    double ticks_per_second);

// /proc/meminfo: node_exporter's metric suffix ("MemAvailable", "Active_anon", ...) -> value,
// in bytes where the file says kB.
struct MeminfoValue {
  double value;
  bool bytes;  // false for counts such as HugePages_Total
};
absl::StatusOr<std::map<std::string, MeminfoValue>> ParseMeminfo(absl::string_view text);

struct LoadAverage {
  double load1, load5, load15;
};
absl::StatusOr<LoadAverage> ParseLoadavg(absl::string_view text);

struct Mount {
  std::string device, mount_point, fs_type;
  bool read_only;
};
// /proc/mounts (or /proc/1/mounts); octal escapes such as \040 are decoded.
absl::StatusOr<std::vector<Mount>> ParseMounts(absl::string_view text);

// The rest of /proc/stat: btime, ctxt, processes (forks), intr (the total), procs_running,
// procs_blocked.
struct StatCounters {
  double boot_time = 0, context_switches = 0, forks = 0, interrupts = 0;
  double procs_running = 0, procs_blocked = 0;
};
absl::StatusOr<StatCounters> ParseStatCounters(absl::string_view text);

// /proc/diskstats: one entry per device; `fields` are the counters after the device name (11
// before Linux 4.18, 15 with discards, 17 with flushes since 5.5), as the kernel wrote them.
struct DiskStats {
  std::string major, minor, device;
  std::vector<double> fields;
};
absl::StatusOr<std::vector<DiskStats>> ParseDiskstats(absl::string_view text);

// /proc/net/dev: per device, ("receive_bytes", v), ("transmit_colls", v), ... named after the
// file's own header, as node_exporter names them.
struct NetDevStats {
  std::string device;
  std::vector<std::pair<std::string, double>> values;
};
absl::StatusOr<std::vector<NetDevStats>> ParseNetDev(absl::string_view text);

// /proc/pressure/<resource>: the "total=" of the "some" and "full" lines in seconds; a line
// the kernel does not write (cpu "full" before 5.13) is left at -1.
struct Pressure {
  double some_seconds = -1, full_seconds = -1;
};
absl::StatusOr<Pressure> ParsePressure(absl::string_view text);

// "name value" lines, such as /proc/vmstat and /proc/net/snmp6.
absl::StatusOr<std::vector<std::pair<std::string, double>>> ParseNameValueLines(
    absl::string_view text);

// /proc/net/netstat and /proc/net/snmp: header and value lines in pairs ("TcpExt: A B" then
// "TcpExt: 1 2"), as ("TcpExt_A", 1), ("TcpExt_B", 2).
absl::StatusOr<std::vector<std::pair<std::string, double>>> ParseNetstat(absl::string_view text);

// /proc/net/sockstat and sockstat6: "TCP: inuse 5 orphan 0" as ("TCP_inuse", 5), ...
absl::StatusOr<std::vector<std::pair<std::string, double>>> ParseSockstat(absl::string_view text);

// /proc/<pid>/stat: the state letter and the thread count. The command may hold spaces and
// parentheses, so fields are counted from the last ')'.
struct ProcessStat {
  char state = '?';
  double threads = 0;
};
absl::StatusOr<ProcessStat> ParseProcessStat(absl::string_view text);

}  // namespace vigie::agent

#endif  // VIGIE_AGENT_COLLECTORS_PROCFS_H_
