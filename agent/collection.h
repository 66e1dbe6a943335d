// What one collection round produces (samples plus, for exposition, each metric's type and
// help), and the interface of what produces it.
#ifndef VIGIE_AGENT_COLLECTION_H_
#define VIGIE_AGENT_COLLECTION_H_

#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "vigie/v1/agent.pb.h"

namespace vigie::agent {

enum class MetricType { kUntyped, kCounter, kGauge };

struct MetricInfo {
  MetricType type = MetricType::kUntyped;
  std::string help;
};

struct Collection {
  std::vector<v1::Sample> samples;
  // By metric name (std::less<>: looked up by string_view without a temporary string).
  std::map<std::string, MetricInfo, std::less<>> info;

  // Appends a sample stamped `timestamp_ms`; records type and help the first time a name is seen.
  // Labels as a braced list ({{"cpu", id}, {"mode", "idle"}}) go straight into the sample.
  void Add(absl::string_view name,
           std::initializer_list<std::pair<absl::string_view, absl::string_view>> labels,
           double value, int64_t timestamp_ms, MetricType type, absl::string_view help);
  void Add(absl::string_view name, const std::map<std::string, std::string>& labels, double value,
           int64_t timestamp_ms, MetricType type, absl::string_view help);

 private:
  v1::Sample& NewSample(absl::string_view name, double value, int64_t timestamp_ms, MetricType type,
                        absl::string_view help);

 public:
};

// One source of samples. Collect() is called from one thread at a time.
class Collector {
 public:
  virtual ~Collector() = default;
  virtual const char* name() const = 0;
  // Appends this round's samples, stamped `now_ms`. On error, appends nothing usable.
  virtual absl::Status Collect(int64_t now_ms, Collection* out) = 0;
};

}  // namespace vigie::agent

#endif  // VIGIE_AGENT_COLLECTION_H_
