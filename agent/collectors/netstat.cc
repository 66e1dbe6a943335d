#include <map>

#include "absl/strings/str_cat.h"
#include "agent/collectors/collector.h"
#include "agent/collectors/procfs.h"
#include "common/status.h"
#include "re2/re2.h"

namespace vigie::agent {

const char kDefaultNetstatFields[] =
    "^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|"
    "TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts|TCPOFOQueue|TCPRcvQDrop)|"
    "Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|"
    "Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$";

namespace {

// node_netstat_<Proto>_<Field> from /proc/net/netstat, /proc/net/snmp and /proc/net/snmp6,
// node_exporter's default field set.
class NetstatCollector : public Collector {
 public:
  explicit NetstatCollector(const HostPaths& p)
      : dir_(JoinPath(p.procfs, "/net")), fields_(kDefaultNetstatFields) {}
  const char* name() const override { return "netstat"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    for (const char* file : {"netstat", "snmp", "snmp6"}) {
      absl::StatusOr<std::string> text = ReadProcFile(absl::StrCat(dir_, "/", file));
      if (absl::IsNotFound(text.status())) continue;  // snmp6 without IPv6
      if (!text.ok()) return text.status();
      std::vector<std::pair<std::string, double>> values;
      if (std::string(file) == "snmp6") {
        VIGIE_ASSIGN_OR_RETURN(values, ParseNameValueLines(*text));
        for (auto& [name, v] : values) {
          // "Ip6InReceives" -> "Ip6_InReceives", "Icmp6InMsgs" -> "Icmp6_InMsgs".
          size_t six = name.find('6');
          if (six != std::string::npos) name.insert(six + 1, "_");
        }
      } else {
        VIGIE_ASSIGN_OR_RETURN(values, ParseNetstat(*text));
      }
      for (const auto& [name, value] : values) {
        if (!Wanted(name)) continue;
        out->Add(absl::StrCat("node_netstat_", name), {}, value, now_ms, MetricType::kUntyped,
                 absl::StrCat("Statistic ", name, "."));
      }
    }
    return absl::OkStatus();
  }

 private:
  // The field set is the kernel's and does not change: match each name once.
  bool Wanted(const std::string& name) {
    auto it = wanted_.find(name);
    if (it != wanted_.end()) return it->second;
    const bool wanted = RE2::FullMatch(name, fields_);
    if (wanted_.size() < 4096) wanted_.emplace(name, wanted);
    return wanted;
  }

  std::string dir_;
  RE2 fields_;
  std::map<std::string, bool> wanted_;
};

}  // namespace

std::unique_ptr<Collector> NewNetstatCollector(const CollectorConfig& c) {
  return std::make_unique<NetstatCollector>(c.paths);
}

}  // namespace vigie::agent
