#include "agent/textfile.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/agent_message.h"
#include "common/log.h"

namespace vigie::agent {
namespace {

bool IsNameStart(char c) { return absl::ascii_isalpha(c) || c == '_' || c == ':'; }
bool IsNameChar(char c) { return absl::ascii_isalnum(c) || c == '_' || c == ':'; }

bool ParseValue(absl::string_view s, double* v) {
  if (s == "NaN") {
    *v = std::numeric_limits<double>::quiet_NaN();
  } else if (s == "+Inf" || s == "Inf") {
    *v = std::numeric_limits<double>::infinity();
  } else if (s == "-Inf") {
    *v = -std::numeric_limits<double>::infinity();
  } else {
    return absl::SimpleAtod(s, v);
  }
  return true;
}

// Parses one sample line. `p` walks the line.
absl::Status ParseSampleLine(absl::string_view line, const TextfileLimits& limits,
                             std::string* name, std::map<std::string, std::string>* labels,
                             double* value, int64_t* ts_ms, bool* has_ts) {
  size_t p = 0;
  if (p >= line.size() || !IsNameStart(line[p]))
    return absl::InvalidArgumentError("bad metric name");
  while (p < line.size() && IsNameChar(line[p])) ++p;
  *name = std::string(line.substr(0, p));
  if (p < line.size() && line[p] == '{') {
    ++p;
    while (true) {
      while (p < line.size() && line[p] == ' ') ++p;
      if (p < line.size() && line[p] == '}') {
        ++p;
        break;
      }
      size_t start = p;
      if (p >= line.size() || !IsNameStart(line[p])) {
        return absl::InvalidArgumentError("bad label name");
      }
      while (p < line.size() && IsNameChar(line[p])) ++p;
      std::string key(line.substr(start, p - start));
      while (p < line.size() && line[p] == ' ') ++p;
      if (p + 1 >= line.size() || line[p] != '=' || line[p + 1] != '"') {
        return absl::InvalidArgumentError(absl::StrCat("label ", key, ": expected =\"value\""));
      }
      p += 2;
      std::string val;
      while (p < line.size() && line[p] != '"') {
        if (line[p] == '\\' && p + 1 < line.size()) {
          ++p;
          val.push_back(line[p] == 'n' ? '\n' : line[p]);
        } else {
          val.push_back(line[p]);
        }
        ++p;
      }
      if (p >= line.size()) return absl::InvalidArgumentError("unterminated label value");
      ++p;
      if (labels->size() >= limits.max_labels_per_sample) {
        return absl::InvalidArgumentError(
            absl::StrCat("more than ", limits.max_labels_per_sample, " labels"));
      }
      if (!labels->emplace(key, std::move(val)).second) {
        return absl::InvalidArgumentError(absl::StrCat("duplicate label ", key));
      }
      while (p < line.size() && line[p] == ' ') ++p;
      if (p < line.size() && line[p] == ',') ++p;
    }
  }
  std::vector<absl::string_view> rest =
      absl::StrSplit(line.substr(p), absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (rest.empty() || rest.size() > 2) {
    return absl::InvalidArgumentError("expected a value and an optional timestamp");
  }
  if (!ParseValue(rest[0], value)) {
    return absl::InvalidArgumentError(absl::StrCat("bad value \"", rest[0], "\""));
  }
  *has_ts = rest.size() == 2;
  if (*has_ts && !absl::SimpleAtoi(rest[1], ts_ms)) {
    return absl::InvalidArgumentError(absl::StrCat("bad timestamp \"", rest[1], "\""));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseTextfile(absl::string_view text, int64_t now_ms, const TextfileLimits& limits,
                           Collection* out) {
  Collection parsed;
  std::map<std::string, MetricInfo> declared;
  int line_no = 0;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++line_no;
    absl::string_view line = absl::StripAsciiWhitespace(raw);
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits(' ', 3));
      if (f.size() >= 3 && f[1] == "TYPE") {
        absl::string_view t = f.size() == 4 ? f[3] : "";
        MetricType type = t == "counter" ? MetricType::kCounter
                          : t == "gauge" ? MetricType::kGauge
                                         : MetricType::kUntyped;
        declared[std::string(f[2])].type = type;
      } else if (f.size() >= 3 && f[1] == "HELP") {
        declared[std::string(f[2])].help = f.size() == 4 ? std::string(f[3]) : "";
      }
      continue;
    }
    if (parsed.samples.size() >= limits.max_samples_per_file) {
      return absl::ResourceExhaustedError(
          absl::StrCat("more than ", limits.max_samples_per_file, " samples"));
    }
    std::string name;
    std::map<std::string, std::string> labels;
    double value;
    int64_t ts = 0;
    bool has_ts = false;
    if (absl::Status s = ParseSampleLine(line, limits, &name, &labels, &value, &ts, &has_ts);
        !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": ", s.message()));
    }
    const MetricInfo& info = declared[name];
    parsed.Add(name, std::move(labels), value, has_ts ? ts : now_ms, info.type, info.help);
    // The control plane's rules: a sample it would refuse must not reach the stream.
    if (absl::Status s =
            ValidateSample(parsed.samples.back(), SampleLimits{limits.max_labels_per_sample},
                           "sample");
        !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": ", s.message()));
    }
  }
  for (auto& s : parsed.samples) out->samples.push_back(std::move(s));
  for (auto& [k, v] : parsed.info) out->info.emplace(k, v);
  return absl::OkStatus();
}

absl::Status CollectTextfiles(const std::string& directory, int64_t now_ms,
                              const TextfileLimits& limits, Collection* out) {
  DIR* dir = opendir(directory.c_str());
  if (dir == nullptr) {
    return absl::UnavailableError(absl::StrCat("textfile_directory ", directory, ": cannot open"));
  }
  std::vector<std::string> files;
  while (dirent* e = readdir(dir)) {
    absl::string_view n = e->d_name;
    if (absl::EndsWith(n, ".prom") && n[0] != '.') files.emplace_back(n);
  }
  closedir(dir);
  std::sort(files.begin(), files.end());
  bool error = false;
  for (const std::string& f : files) {
    const std::string path = absl::StrCat(directory, "/", f);
    struct stat st;
    std::string text;
    absl::Status s;
    if (stat(path.c_str(), &st) != 0) {
      s = absl::NotFoundError("vanished");
    } else if (static_cast<size_t>(st.st_size) > limits.max_file_bytes) {
      s = absl::ResourceExhaustedError(
          absl::StrCat("larger than ", limits.max_file_bytes, " bytes"));
    } else {
      std::ifstream in(path);
      std::stringstream ss;
      ss << in.rdbuf();
      s = in ? ParseTextfile(ss.str(), now_ms, limits, out) : absl::UnavailableError("unreadable");
    }
    if (!s.ok()) {
      error = true;
      log::Warn("textfile skipped", {{"file", path}, {"error", s}});
      continue;
    }
    out->Add("node_textfile_mtime_seconds", {{"file", path}}, static_cast<double>(st.st_mtime),
             now_ms, MetricType::kGauge, "Unixtime mtime of textfiles successfully read.");
  }
  out->Add("node_textfile_scrape_error", {}, error ? 1 : 0, now_ms, MetricType::kGauge,
           "1 if there was an error opening or reading a file, 0 otherwise");
  return absl::OkStatus();
}

}  // namespace vigie::agent
