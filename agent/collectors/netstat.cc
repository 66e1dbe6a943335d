#include <map>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
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
    for (Source& src : sources_) {
      if (!src.handle) src.handle = std::make_unique<ProcFile>(absl::StrCat(dir_, "/", src.file));
      absl::StatusOr<std::string> text = src.handle->Read();
      if (absl::IsNotFound(text.status())) continue;  // snmp6 without IPv6
      if (!text.ok()) return text.status();
      // The names (the file's layout) change only with the kernel: once they match the last
      // round's, only the values are parsed, and the wanted ones picked by position.
      std::string layout;
      std::vector<double> values;
      VIGIE_RETURN_IF_ERROR(Split(*text, src.snmp6, &layout, &values));
      if (layout != src.layout) {
        VIGIE_RETURN_IF_ERROR(Plan(*text, &src));
        src.layout = std::move(layout);
      }
      for (const Pick& p : src.picks) {
        if (p.index < values.size()) {
          out->Add(p.metric, {}, values[p.index], now_ms, MetricType::kUntyped, p.help);
        }
      }
    }
    return absl::OkStatus();
  }

 private:
  struct Pick {
    size_t index;  // among the file's values, in order
    std::string metric, help;
  };
  struct Source {
    const char* file;
    bool snmp6;  // "Name value" lines rather than header/value line pairs
    std::string layout;
    std::vector<Pick> picks;
    std::unique_ptr<ProcFile> handle;  // opened on first use
  };

  // The layout (every name, in order) and the values, without building a string per field.
  static absl::Status Split(absl::string_view text, bool snmp6, std::string* layout,
                            std::vector<double>* values) {
    layout->reserve(text.size());
    size_t line_no = 0;
    for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
      ++line_no;
      if (snmp6) {
        size_t space = line.find_first_of(" \t");
        double v;
        if (space == absl::string_view::npos ||
            !absl::SimpleAtod(absl::StripAsciiWhitespace(line.substr(space)), &v)) {
          return absl::InvalidArgumentError(absl::StrCat("snmp6 line ", line_no, ": malformed"));
        }
        absl::StrAppend(layout, line.substr(0, space), " ");
        values->push_back(v);
      } else if (line_no % 2 == 1) {
        absl::StrAppend(layout, line, "\n");  // a header line
      } else {
        bool first = true;
        for (absl::string_view f : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
          if (first) {  // "TcpExt:"
            first = false;
            continue;
          }
          double v;
          if (!absl::SimpleAtod(f, &v)) {
            return absl::InvalidArgumentError(
                absl::StrCat("netstat line ", line_no, ": bad number \"", f, "\""));
          }
          values->push_back(v);
        }
      }
    }
    return absl::OkStatus();
  }

  // Names every value the slow way and keeps the ones node_exporter's field set selects.
  absl::Status Plan(absl::string_view text, Source* src) {
    std::vector<std::pair<std::string, double>> named;
    if (src->snmp6) {
      VIGIE_ASSIGN_OR_RETURN(named, ParseNameValueLines(text));
      for (auto& [name, v] : named) {
        // "Ip6InReceives" -> "Ip6_InReceives", "Icmp6InMsgs" -> "Icmp6_InMsgs".
        size_t six = name.find('6');
        if (six != std::string::npos) name.insert(six + 1, "_");
      }
    } else {
      VIGIE_ASSIGN_OR_RETURN(named, ParseNetstat(text));
    }
    src->picks.clear();
    for (size_t i = 0; i < named.size(); ++i) {
      if (!RE2::FullMatch(named[i].first, fields_)) continue;
      src->picks.push_back({i, absl::StrCat("node_netstat_", named[i].first),
                            absl::StrCat("Statistic ", named[i].first, ".")});
    }
    return absl::OkStatus();
  }

  std::string dir_;
  RE2 fields_;
  Source sources_[3] = {{"netstat", false, {}, {}, nullptr},
                        {"snmp", false, {}, {}, nullptr},
                        {"snmp6", true, {}, {}, nullptr}};
};

}  // namespace

std::unique_ptr<Collector> NewNetstatCollector(const CollectorConfig& c) {
  return std::make_unique<NetstatCollector>(c.paths);
}

}  // namespace vigie::agent
