// The agent's on-disk spool: durable messages are appended before they are sent and
// forgotten once acknowledged, so an agent restart or crash loses nothing already collected.
//
// Layout: <directory>/LOCK (flock: one agent per spool) and segment files
// <directory>/NNNNNNNNNNNNNNNNNNNN.seg, numbered in write order. A segment is
//   header:  "VIGIESPL" | u32 format (1) | u32 flags | u64 next_sequence | u32 crc32 of the header
//   so far records: u32 payload length | u32 crc32 of (type, payload) | u8 type | payload
// all integers little-endian. Record type 1 is a serialized vigie.v1.AgentMessage; a later
// encoding gets a new type, and old spools stay readable. next_sequence is the agent's
// numbering when the segment was started (0 = not numbered yet), so the counter survives even
// when every message has been acknowledged. Flag 1 ("supersedes") marks a segment written by
// Rewrite: it replaces every older segment, even ones a crash left behind.
//
// Reading never fails on bad content: a torn tail, a flipped bit or a bad header is skipped
// (the reader resynchronises on the next record whose checksum holds) and counted.
//
// Not thread-safe: the outbox calls it under its own lock.
#ifndef VIGIE_AGENT_SPOOL_H_
#define VIGIE_AGENT_SPOOL_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "vigie/v1/agent.pb.h"

namespace vigie::agent {

struct SpoolOptions {
  std::string directory;
  uint64_t max_bytes = 64 << 20;
  // fdatasync every record (and directory changes) before returning.
  bool fsync = true;
};

class Spool {
 public:
  // What a spool held when opened.
  struct Recovered {
    std::vector<v1::AgentMessage> messages;  // in order; sequence 0 = not numbered yet
    uint64_t next_sequence = 0;              // 0 = the agent has never been numbered
    uint64_t corrupt = 0;                    // damaged regions and headers skipped
  };

  // Opens the spool in `options.directory` (creating it, mode 0700) and reads it. Fails only if
  // the directory cannot be used (permissions, another agent holds it); damaged content is
  // skipped and counted in `recovered->corrupt`.
  static absl::StatusOr<std::unique_ptr<Spool>> Open(const SpoolOptions& options,
                                                     Recovered* recovered);
  ~Spool();

  // Appends `m`; on return it is written (and synced, with fsync on). On error (a full disk)
  // the segment is cut back to its previous length and the error returned.
  absl::Status Append(const v1::AgentMessage& m, uint64_t next_sequence);

  // Every message with a sequence <= `acked` is stored (or dropped): deletes the segments
  // holding nothing newer, and starts a fresh segment once the current one is all
  // acknowledged and large. The bound (max_bytes) is the outbox's to enforce, with this and
  // Rewrite.
  void Forget(uint64_t acked, uint64_t next_sequence);

  // Replaces the spool's content with `messages` (after renumbering or splitting).
  absl::Status Rewrite(const std::deque<v1::AgentMessage>& messages, uint64_t next_sequence);

  uint64_t bytes() const { return total_bytes_; }
  size_t segments() const { return segments_.size(); }

 private:
  struct Segment {
    std::string path;
    uint64_t bytes = 0;
    uint64_t records = 0;
    uint64_t max_sequence = 0;
  };
  explicit Spool(SpoolOptions options) : options_(std::move(options)) {}
  absl::Status StartSegment(uint64_t next_sequence, bool supersedes);
  void DeleteSegment(size_t index);
  void SyncDirectory();

  const SpoolOptions options_;
  int lock_fd_ = -1;
  int active_fd_ = -1;  // the last segment, open for appending
  std::deque<Segment> segments_;
  uint64_t total_bytes_ = 0;
  uint64_t next_number_ = 1;
};

// Exposed for tests: encodes one record.
std::string EncodeSpoolRecord(const v1::AgentMessage& m);

}  // namespace vigie::agent

#endif  // VIGIE_AGENT_SPOOL_H_
