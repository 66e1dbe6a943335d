// Series identities in memory, in front of the `series` and `series_layouts` tables, so ingest
// neither converts labels to JSON nor asks the database for ids on the hot path.
//
// Per agent it keeps the ids of every series seen and the layout of its last batch (the series
// in order, with the layout's id). An agent sends the same series in the same order almost
// every time, so most samples are matched by position: one key build and one string compare,
// no hash lookup. The whole cache is bounded in bytes across all agents; the least recently
// used agents are forgotten first (their next batch resolves from the database again).
//
// Ingest takes an agent's entry out (Take), resolves and stores, and puts it back only after
// the transaction committed (Put): ids of a rolled-back transaction never enter the cache.
#ifndef VIGIE_CONTROLPLANE_SERIES_CACHE_H_
#define VIGIE_CONTROLPLANE_SERIES_CACHE_H_

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "common/mutex.h"

namespace vigie::controlplane {

struct AgentSeries {
  // Series key (SeriesKey) -> id. Node map: `layout` points into it. Insert through Add.
  absl::node_hash_map<std::string, int64_t> ids;
  // The last stored batch's series in order, and its layout id (0 = none).
  std::vector<const std::pair<const std::string, int64_t>*> layout;
  std::vector<int64_t> layout_ids;
  int64_t layout_id = 0;
  size_t id_bytes = 0;        // heap bytes of `ids`' nodes and keys, kept by Add
  int64_t series_count = -1;  // the agent's rows in `series` (-1: not read yet)

  // Records a series' id.
  void Add(const std::string& key, int64_t id);
  // Approximate heap bytes held (keys, nodes, the layout vectors); O(1).
  size_t Bytes() const;
  // Sets the layout from the keys of a batch (each must be in `ids`).
  void SetLayout(const std::vector<std::string>& keys, std::vector<int64_t> layout_ids,
                 int64_t layout_id);
};

class SeriesCache {
 public:
  explicit SeriesCache(size_t max_bytes) : max_bytes_(max_bytes) {}

  // The agent's entry, removed from the cache (an empty one if it had none).
  std::unique_ptr<AgentSeries> Take(const std::string& agent_id);
  // Returns an entry; evicts least recently used agents while over the bound. An entry alone
  // larger than the bound is dropped.
  void Put(const std::string& agent_id, std::unique_ptr<AgentSeries> entry);

  size_t bytes() const;
  size_t agents() const;
  uint64_t evictions() const;

 private:
  struct Slot {
    std::unique_ptr<AgentSeries> entry;
    size_t bytes;
    std::list<std::string>::iterator lru;
  };
  const size_t max_bytes_;
  mutable Mutex mu_;
  absl::flat_hash_map<std::string, Slot> slots_ ABSL_GUARDED_BY(mu_);
  std::list<std::string> lru_ ABSL_GUARDED_BY(mu_);  // front = most recent
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t evictions_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace vigie::controlplane

#endif  // VIGIE_CONTROLPLANE_SERIES_CACHE_H_
