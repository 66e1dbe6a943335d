// Prometheus text exposition format parser for the textfile collector (node_exporter's
// --collector.textfile.directory): *.prom files written by cron jobs and scripts.
#ifndef VIGIE_AGENT_TEXTFILE_H_
#define VIGIE_AGENT_TEXTFILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "agent/collection.h"

namespace vigie::agent {

// Limits that keep one bad file from growing the agent's memory.
struct TextfileLimits {
  size_t max_file_bytes = 1 << 20;
  size_t max_samples_per_file = 10000;
  size_t max_labels_per_sample = 32;
};

// Parses `text` and appends its samples to `out`, stamped `now_ms` unless a line carries its
// own timestamp. On error nothing is appended and the message names the line.
absl::Status ParseTextfile(absl::string_view text, int64_t now_ms, const TextfileLimits& limits,
                           Collection* out);

// Reads every *.prom file in `directory` (sorted). A file that fails to parse is skipped and
// reported in node_textfile_scrape_error; node_textfile_mtime_seconds{file} is set per file.
// Returns an error only if the directory cannot be read.
absl::Status CollectTextfiles(const std::string& directory, int64_t now_ms,
                              const TextfileLimits& limits, Collection* out);

}  // namespace vigie::agent

#endif  // VIGIE_AGENT_TEXTFILE_H_
