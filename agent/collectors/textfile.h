// The textfile collector (node_exporter's --collector.textfile.directory): *.prom files in
// the Prometheus text format written by cron jobs and scripts. A file is taken whole or not
// at all, as node_exporter does; a refused file is counted by reason, logged once (not once
// per round) and never holds up the rest of the agent.
#ifndef VIGIE_AGENT_COLLECTORS_TEXTFILE_H_
#define VIGIE_AGENT_COLLECTORS_TEXTFILE_H_

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "agent/collection.h"

namespace vigie::agent {

// Limits that keep one bad file, or many, from growing the agent's memory.
struct TextfileLimits {
  size_t max_file_bytes = 1 << 20;
  size_t max_samples_per_file = 10000;
  size_t max_labels_per_sample = 32;
  size_t max_files = 1000;
  size_t max_total_samples = 50000;
};

// Why a file was refused (label values of vigie_agent_textfile_files_refused_total).
inline constexpr char kTextfileNotRegular[] = "not_regular";
inline constexpr char kTextfileTooLarge[] = "too_large";
inline constexpr char kTextfileTooManySamples[] = "too_many_samples";
inline constexpr char kTextfileTimestamp[] = "timestamp";
inline constexpr char kTextfileSyntax[] = "syntax";
inline constexpr char kTextfileInvalidSample[] = "invalid_sample";
inline constexpr char kTextfileUnreadable[] = "unreadable";
inline constexpr char kTextfileTooManyFiles[] = "too_many_files";

// Parses `text` and appends its samples to `out`, stamped `now_ms`. Metrics without HELP get
// `default_help`. Refused, with nothing appended and a message naming the line, are: syntax
// errors, explicit timestamps (node_exporter refuses them too: a textfile value is "now"),
// samples the control plane would refuse (invalid UTF-8, bad names, too many labels...) and
// more than max_samples_per_file samples. `reason`, if given, receives a kTextfile* value.
absl::Status ParseTextfile(absl::string_view text, int64_t now_ms, const TextfileLimits& limits,
                           const std::string& default_help, Collection* out,
                           const char** reason = nullptr);

// Reads every *.prom file in a directory (sorted): regular files only (a FIFO, a device, a
// symlink to /dev/zero are refused without being read), each at most max_file_bytes. Exports
// node_textfile_mtime_seconds{file}, node_textfile_scrape_error and
// vigie_agent_textfile_files_refused_total{reason}. Not thread-safe (one round at a time).
class TextfileCollector : public Collector {
 public:
  TextfileCollector(std::string directory, TextfileLimits limits);
  const char* name() const override { return "textfile"; }
  // Fails only if the directory cannot be read.
  absl::Status Collect(int64_t now_ms, Collection* out) override;

 private:
  // Counts and logs (once per file and message) a refused file.
  void Refuse(const std::string& path, const char* reason, absl::string_view message);

  const std::string directory_;
  const TextfileLimits limits_;
  std::map<std::string, uint64_t> refused_;    // by reason
  std::map<std::string, std::string> logged_;  // path -> last error logged
};

}  // namespace vigie::agent

#endif  // VIGIE_AGENT_COLLECTORS_TEXTFILE_H_
