#include "agent/collectors/textfile.h"

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
#include "agent/collectors/collector.h"
#include "common/agent_message.h"
#include "common/files.h"
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
                           const std::string& default_help, Collection* out, const char** reason) {
  auto refuse = [reason](const char* why, absl::Status s) {
    if (reason != nullptr) *reason = why;
    return s;
  };
  Collection parsed;
  std::map<std::string, MetricInfo> declared;
  SampleLimits sample_limits;
  sample_limits.max_labels = limits.max_labels_per_sample;
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
        // HELP text ends up in a proto string and on /metrics: it must be UTF-8 too.
        absl::string_view help = f.size() == 4 ? f[3] : "";
        if (!IsValidUtf8(help)) {
          return refuse(kTextfileInvalidSample,
                        absl::InvalidArgumentError(
                            absl::StrCat("line ", line_no, ": HELP text is not valid UTF-8")));
        }
        declared[std::string(f[2])].help = std::string(help);
      }
      continue;
    }
    if (parsed.samples.size() >= limits.max_samples_per_file) {
      return refuse(kTextfileTooManySamples,
                    absl::ResourceExhaustedError(
                        absl::StrCat("more than ", limits.max_samples_per_file, " samples")));
    }
    std::string name;
    std::map<std::string, std::string> labels;
    double value;
    int64_t ts = 0;
    bool has_ts = false;
    if (absl::Status s = ParseSampleLine(line, limits, &name, &labels, &value, &ts, &has_ts);
        !s.ok()) {
      return refuse(kTextfileSyntax,
                    absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": ", s.message())));
    }
    if (has_ts) {
      return refuse(
          kTextfileTimestamp,
          absl::InvalidArgumentError(absl::StrCat(
              "line ", line_no, ": explicit timestamps are not supported (as in node_exporter)")));
    }
    const MetricInfo& info = declared[name];
    parsed.Add(name, std::move(labels), value, now_ms, info.type,
               info.help.empty() ? default_help : info.help);
    // The control plane's rules: a sample it would refuse must not reach the stream.
    if (absl::Status s = ValidateSample(parsed.samples.back(), sample_limits, "sample"); !s.ok()) {
      return refuse(kTextfileInvalidSample,
                    absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": ", s.message())));
    }
  }
  for (auto& s : parsed.samples) out->samples.push_back(std::move(s));
  for (auto& [k, v] : parsed.info) out->info.emplace(k, v);
  return absl::OkStatus();
}

TextfileCollector::TextfileCollector(std::string directory, TextfileLimits limits)
    : directory_(std::move(directory)), limits_(limits) {
  for (const char* r :
       {kTextfileNotRegular, kTextfileTooLarge, kTextfileTooManySamples, kTextfileTimestamp,
        kTextfileSyntax, kTextfileInvalidSample, kTextfileUnreadable, kTextfileTooManyFiles}) {
    refused_[r] = 0;
  }
}

void TextfileCollector::Refuse(const std::string& path, const char* reason,
                               absl::string_view message) {
  ++refused_[reason];
  std::string& last = logged_[path];
  if (last == message) return;
  last = std::string(message);
  log::Warn("textfile refused", {{"file", path}, {"reason", reason}, {"error", message}});
}

absl::Status TextfileCollector::Collect(int64_t now_ms, Collection* out) {
  DIR* dir = opendir(directory_.c_str());
  if (dir == nullptr) {
    return absl::UnavailableError(absl::StrCat("textfile_directory ", directory_, ": cannot open"));
  }
  std::vector<std::string> files;
  bool too_many = false;
  while (dirent* e = readdir(dir)) {
    absl::string_view n = e->d_name;
    if (!absl::EndsWith(n, ".prom") || n[0] == '.') continue;
    if (files.size() >= limits_.max_files) {
      too_many = true;
      break;
    }
    files.emplace_back(n);
  }
  closedir(dir);
  std::sort(files.begin(), files.end());
  bool error = false;
  if (too_many) {
    error = true;
    Refuse(directory_, kTextfileTooManyFiles,
           absl::StrCat("more than ", limits_.max_files, " *.prom files; the rest are ignored"));
  }
  std::map<std::string, std::string> logged;  // keeps only files still present
  size_t total = 0;
  for (const std::string& f : files) {
    const std::string path = absl::StrCat(directory_, "/", f);
    if (auto it = logged_.find(path); it != logged_.end()) logged.insert(*it);
    struct stat st;
    const char* reason = kTextfileUnreadable;
    absl::Status s;
    // stat follows symlinks: a link to /dev/zero is a character device, refused unread.
    if (stat(path.c_str(), &st) != 0) {
      continue;  // removed since the listing
    }
    absl::StatusOr<std::string> text = ReadRegularFile(path, limits_.max_file_bytes);
    Collection parsed;
    if (!text.ok()) {
      s = text.status();
      reason = absl::IsFailedPrecondition(s)  ? kTextfileNotRegular
               : absl::IsResourceExhausted(s) ? kTextfileTooLarge
                                              : kTextfileUnreadable;
    } else {
      TextfileLimits limits = limits_;
      limits.max_samples_per_file =
          std::min(limits_.max_samples_per_file, limits_.max_total_samples - total);
      s = ParseTextfile(*text, now_ms, limits, absl::StrCat("Metric read from ", path), &parsed,
                        &reason);
    }
    if (!s.ok()) {
      error = true;
      Refuse(path, reason, s.message());
      logged[path] = logged_[path];
      continue;
    }
    logged.erase(path);  // healthy again: a later failure is logged anew
    total += parsed.samples.size();
    for (auto& smp : parsed.samples) out->samples.push_back(std::move(smp));
    for (auto& [k, v] : parsed.info) out->info.emplace(k, v);
    out->Add("node_textfile_mtime_seconds", {{"file", path}}, static_cast<double>(st.st_mtime),
             now_ms, MetricType::kGauge, "Unixtime mtime of textfiles successfully read.");
  }
  if (too_many) logged[directory_] = logged_[directory_];
  logged_.swap(logged);
  out->Add("node_textfile_scrape_error", {}, error ? 1 : 0, now_ms, MetricType::kGauge,
           "1 if there was an error opening or reading a file, 0 otherwise");
  for (const auto& [reason, n] : refused_) {
    out->Add("vigie_agent_textfile_files_refused_total", {{"reason", reason}},
             static_cast<double>(n), now_ms, MetricType::kCounter,
             "Textfiles refused (and skipped whole), by reason.");
  }
  return absl::OkStatus();
}

std::unique_ptr<Collector> NewTextfileCollector(const CollectorConfig& c) {
  if (c.textfile_directory.empty()) return nullptr;
  return std::make_unique<TextfileCollector>(c.textfile_directory, c.textfile);
}

}  // namespace vigie::agent
