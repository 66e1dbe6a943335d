#include "controlplane/series_cache.h"

namespace vigie::controlplane {

void AgentSeries::Add(const std::string& key, int64_t id) {
  // A node: the pair plus allocator overhead; a key's heap buffer when it is not inline.
  constexpr size_t kNode = sizeof(std::pair<const std::string, int64_t>) + 16;
  if (ids.insert_or_assign(key, id).second) {
    id_bytes += kNode + (key.size() > 15 ? key.size() + 1 : 0);
  }
}

size_t AgentSeries::Bytes() const {
  return sizeof(*this) + id_bytes + ids.bucket_count() * sizeof(void*) +
         layout.capacity() * sizeof(layout[0]) + layout_ids.capacity() * sizeof(int64_t);
}

void AgentSeries::SetLayout(const std::vector<std::string>& keys,
                            std::vector<int64_t> new_layout_ids, int64_t new_layout_id) {
  layout.clear();
  layout.reserve(keys.size());
  for (const std::string& k : keys) layout.push_back(&*ids.find(k));
  layout_ids = std::move(new_layout_ids);
  layout_id = new_layout_id;
}

std::unique_ptr<AgentSeries> SeriesCache::Take(const std::string& agent_id) {
  MutexLock lock(&mu_);
  auto it = slots_.find(agent_id);
  if (it == slots_.end()) return std::make_unique<AgentSeries>();
  std::unique_ptr<AgentSeries> entry = std::move(it->second.entry);
  bytes_ -= it->second.bytes;
  lru_.erase(it->second.lru);
  slots_.erase(it);
  return entry;
}

void SeriesCache::Put(const std::string& agent_id, std::unique_ptr<AgentSeries> entry) {
  const size_t bytes = entry->Bytes() + agent_id.size() + 64;
  MutexLock lock(&mu_);
  if (slots_.count(agent_id) != 0) return;  // another stream of the agent put one back first
  if (bytes > max_bytes_) {
    ++evictions_;
    return;
  }
  while (bytes_ + bytes > max_bytes_ && !lru_.empty()) {
    auto victim = slots_.find(lru_.back());
    bytes_ -= victim->second.bytes;
    slots_.erase(victim);
    lru_.pop_back();
    ++evictions_;
  }
  lru_.push_front(agent_id);
  slots_.emplace(agent_id, Slot{std::move(entry), bytes, lru_.begin()});
  bytes_ += bytes;
}

size_t SeriesCache::bytes() const {
  MutexLock lock(&mu_);
  return bytes_;
}
size_t SeriesCache::agents() const {
  MutexLock lock(&mu_);
  return slots_.size();
}
uint64_t SeriesCache::evictions() const {
  MutexLock lock(&mu_);
  return evictions_;
}

}  // namespace vigie::controlplane
