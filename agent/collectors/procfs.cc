#include "agent/collectors/procfs.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace vigie::agent {
namespace {

std::vector<absl::string_view> Fields(absl::string_view line) {
  return absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
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
    std::vector<absl::string_view> f = Fields(line);
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
    std::vector<absl::string_view> f = Fields(line);
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
  std::vector<absl::string_view> f = Fields(absl::StripAsciiWhitespace(text));
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
    std::vector<absl::string_view> f = Fields(line);
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

}  // namespace vigie::agent
