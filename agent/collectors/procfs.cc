#include "agent/collectors/procfs.h"

#include "absl/container/inlined_vector.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace vigie::agent {
namespace {

// Whitespace-separated fields of one line; inline storage, so no allocation per line.
using FieldList = absl::InlinedVector<absl::string_view, 24>;
FieldList Fields(absl::string_view line) {
  FieldList out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

std::string Unescape(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && absl::ascii_isdigit(s[i + 1]) &&
        absl::ascii_isdigit(s[i + 2]) && absl::ascii_isdigit(s[i + 3])) {
      out.push_back(
          static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<CpuTimes>> ParseProcStat(absl::string_view text,
                                                    double ticks_per_second) {
  static const char* const kModes[] = {"user",   "nice", "system",  "idle",
                                       "iowait", "irq",  "softirq", "steal"};
  std::vector<CpuTimes> cpus;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (!absl::StartsWith(line, "cpu") || absl::StartsWith(line, "cpu ")) continue;
    FieldList f = Fields(line);
    if (f.size() < 5) {
      return absl::InvalidArgumentError(absl::StrCat("stat line ", line_no, ": too few fields"));
    }
    CpuTimes t;
    t.cpu = std::string(f[0].substr(3));
    for (size_t i = 1; i < f.size() && i <= 10; ++i) {
      double ticks;
      if (!absl::SimpleAtod(f[i], &ticks)) {
        return absl::InvalidArgumentError(
            absl::StrCat("stat line ", line_no, ": bad number \"", f[i], "\""));
      }
      double seconds = ticks / ticks_per_second;
      if (i <= 8) {
        t.seconds[kModes[i - 1]] = seconds;
      } else {
        t.guest_seconds[i == 9 ? "user" : "nice"] = seconds;
      }
    }
    cpus.push_back(std::move(t));
  }
  if (cpus.empty()) return absl::InvalidArgumentError("stat: no per-CPU lines");
  return cpus;
}

absl::StatusOr<std::map<std::string, MeminfoValue>> ParseMeminfo(absl::string_view text) {
  std::map<std::string, MeminfoValue> out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    ++line_no;
    FieldList f = Fields(line);
    if (f.size() < 2 || !absl::EndsWith(f[0], ":")) {
      return absl::InvalidArgumentError(absl::StrCat("meminfo line ", line_no, ": malformed"));
    }
    double v;
    if (!absl::SimpleAtod(f[1], &v)) {
      return absl::InvalidArgumentError(
          absl::StrCat("meminfo line ", line_no, ": bad number \"", f[1], "\""));
    }
    bool bytes = f.size() >= 3 && f[2] == "kB";
    if (bytes) v *= 1024;
    // As node_exporter: "Active(anon):" -> "Active_anon".
    std::string key(absl::StripSuffix(f[0], ":"));
    std::string name;
    for (char c : key) {
      if (c == '(') {
        name.push_back('_');
      } else if (c != ')') {
        name.push_back(c);
      }
    }
    out[name] = {v, bytes};
  }
  if (out.empty()) return absl::InvalidArgumentError("meminfo: empty");
  return out;
}

absl::StatusOr<LoadAverage> ParseLoadavg(absl::string_view text) {
  FieldList f = Fields(absl::StripAsciiWhitespace(text));
  LoadAverage l;
  if (f.size() < 3 || !absl::SimpleAtod(f[0], &l.load1) || !absl::SimpleAtod(f[1], &l.load5) ||
      !absl::SimpleAtod(f[2], &l.load15)) {
    return absl::InvalidArgumentError(absl::StrCat("loadavg: malformed \"", text, "\""));
  }
  return l;
}

absl::StatusOr<std::vector<Mount>> ParseMounts(absl::string_view text) {
  std::vector<Mount> out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    ++line_no;
    FieldList f = Fields(line);
    if (f.size() < 4) {
      return absl::InvalidArgumentError(absl::StrCat("mounts line ", line_no, ": too few fields"));
    }
    Mount m{Unescape(f[0]), Unescape(f[1]), std::string(f[2]), false};
    for (absl::string_view opt : absl::StrSplit(f[3], ',')) {
      if (opt == "ro") m.read_only = true;
    }
    out.push_back(std::move(m));
  }
  return out;
}

namespace {

absl::Status BadNumber(absl::string_view file, int line_no, absl::string_view value) {
  return absl::InvalidArgumentError(
      absl::StrCat(file, " line ", line_no, ": bad number \"", value, "\""));
}

}  // namespace

absl::StatusOr<StatCounters> ParseStatCounters(absl::string_view text) {
  StatCounters c;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    FieldList f = Fields(line);
    if (f.size() < 2) continue;
    double* dst = f[0] == "btime"           ? &c.boot_time
                  : f[0] == "ctxt"          ? &c.context_switches
                  : f[0] == "processes"     ? &c.forks
                  : f[0] == "intr"          ? &c.interrupts
                  : f[0] == "procs_running" ? &c.procs_running
                  : f[0] == "procs_blocked" ? &c.procs_blocked
                                            : nullptr;
    if (dst != nullptr && !absl::SimpleAtod(f[1], dst)) return BadNumber("stat", line_no, f[1]);
  }
  return c;
}

absl::StatusOr<std::vector<DiskStats>> ParseDiskstats(absl::string_view text) {
  std::vector<DiskStats> out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    FieldList f = Fields(line);
    if (f.empty()) continue;
    if (f.size() < 14) {
      return absl::InvalidArgumentError(
          absl::StrCat("diskstats line ", line_no, ": ", f.size(), " fields, expected 14 or more"));
    }
    DiskStats d;
    d.major = std::string(f[0]);
    d.minor = std::string(f[1]);
    d.device = std::string(f[2]);
    for (size_t i = 3; i < f.size(); ++i) {
      double v;
      if (!absl::SimpleAtod(f[i], &v)) return BadNumber("diskstats", line_no, f[i]);
      d.fields.push_back(v);
    }
    out.push_back(std::move(d));
  }
  return out;
}

absl::StatusOr<std::vector<NetDevStats>> ParseNetDev(absl::string_view text) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  if (lines.size() < 2) return absl::InvalidArgumentError("net/dev: no header");
  // Header line 2: " face |bytes packets ...|bytes packets ...".
  std::vector<absl::string_view> parts = absl::StrSplit(lines[1], '|');
  if (parts.size() != 3) return absl::InvalidArgumentError("net/dev: unexpected header");
  std::vector<std::string> names;
  for (absl::string_view n : Fields(parts[1])) names.push_back(absl::StrCat("receive_", n));
  for (absl::string_view n : Fields(parts[2])) names.push_back(absl::StrCat("transmit_", n));
  std::vector<NetDevStats> out;
  for (size_t i = 2; i < lines.size(); ++i) {
    size_t colon = lines[i].rfind(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("net/dev line ", i + 1, ": no ':'"));
    }
    NetDevStats d;
    d.device = std::string(absl::StripAsciiWhitespace(lines[i].substr(0, colon)));
    FieldList f = Fields(lines[i].substr(colon + 1));
    if (f.size() != names.size()) {
      return absl::InvalidArgumentError(absl::StrCat("net/dev line ", i + 1, ": ", f.size(),
                                                     " values for ", names.size(), " columns"));
    }
    for (size_t j = 0; j < f.size(); ++j) {
      double v;
      if (!absl::SimpleAtod(f[j], &v)) return BadNumber("net/dev", static_cast<int>(i + 1), f[j]);
      d.values.emplace_back(names[j], v);
    }
    out.push_back(std::move(d));
  }
  return out;
}

absl::StatusOr<Pressure> ParsePressure(absl::string_view text) {
  Pressure p;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    FieldList f = Fields(line);
    if (f.empty()) continue;
    double* dst = f[0] == "some" ? &p.some_seconds : f[0] == "full" ? &p.full_seconds : nullptr;
    if (dst == nullptr) continue;
    for (absl::string_view kv : f) {
      if (!absl::ConsumePrefix(&kv, "total=")) continue;
      double us;
      if (!absl::SimpleAtod(kv, &us)) return BadNumber("pressure", 0, kv);
      *dst = us / 1e6;
    }
  }
  if (p.some_seconds < 0) return absl::InvalidArgumentError("pressure: no \"some\" line");
  return p;
}

absl::StatusOr<std::vector<std::pair<std::string, double>>> ParseNameValueLines(
    absl::string_view text) {
  std::vector<std::pair<std::string, double>> out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    FieldList f = Fields(line);
    if (f.empty()) continue;
    double v;
    if (f.size() != 2 || !absl::SimpleAtod(f[1], &v)) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": expected name value"));
    }
    out.emplace_back(std::string(f[0]), v);
  }
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, double>>> ParseNetstat(absl::string_view text) {
  std::vector<std::pair<std::string, double>> out;
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  if (lines.size() % 2 != 0) return absl::InvalidArgumentError("netstat: odd number of lines");
  for (size_t i = 0; i < lines.size(); i += 2) {
    FieldList names = Fields(lines[i]);
    FieldList values = Fields(lines[i + 1]);
    if (names.empty() || names.size() != values.size() || names[0] != values[0] ||
        !absl::EndsWith(names[0], ":")) {
      return absl::InvalidArgumentError(
          absl::StrCat("netstat lines ", i + 1, "-", i + 2, ": header and values do not match"));
    }
    absl::string_view proto = names[0].substr(0, names[0].size() - 1);
    for (size_t j = 1; j < names.size(); ++j) {
      double v;
      if (!absl::SimpleAtod(values[j], &v)) {
        return BadNumber("netstat", static_cast<int>(i + 2), values[j]);
      }
      out.emplace_back(absl::StrCat(proto, "_", names[j]), v);
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, double>>> ParseSockstat(absl::string_view text) {
  std::vector<std::pair<std::string, double>> out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    ++line_no;
    FieldList f = Fields(line);
    if (f.size() < 3 || f.size() % 2 != 1 || !absl::EndsWith(f[0], ":")) {
      return absl::InvalidArgumentError(absl::StrCat("sockstat line ", line_no, ": malformed"));
    }
    absl::string_view proto = f[0].substr(0, f[0].size() - 1);
    for (size_t j = 1; j + 1 < f.size(); j += 2) {
      double v;
      if (!absl::SimpleAtod(f[j + 1], &v)) return BadNumber("sockstat", line_no, f[j + 1]);
      out.emplace_back(absl::StrCat(proto, "_", f[j]), v);
    }
  }
  return out;
}

absl::StatusOr<ProcessStat> ParseProcessStat(absl::string_view text) {
  size_t close = text.rfind(')');
  if (close == absl::string_view::npos) return absl::InvalidArgumentError("stat: no ')'");
  FieldList f = Fields(text.substr(close + 1));
  // state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
  // cutime cstime priority nice num_threads ...
  if (f.size() < 18 || f[0].size() != 1) return absl::InvalidArgumentError("stat: too short");
  ProcessStat p;
  p.state = f[0][0];
  if (!absl::SimpleAtod(f[17], &p.threads)) return BadNumber("stat", 1, f[17]);
  return p;
}

}  // namespace vigie::agent
