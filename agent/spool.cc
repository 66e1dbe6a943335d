#include "agent/spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "common/agent_message.h"
#include "common/files.h"
#include "common/log.h"

namespace vigie::agent {
namespace {

constexpr char kMagic[8] = {'V', 'I', 'G', 'I', 'E', 'S', 'P', 'L'};
constexpr uint32_t kFormat = 1;
constexpr uint32_t kFlagSupersedes = 1;
constexpr size_t kHeaderBytes = 8 + 4 + 4 + 8 + 4;
constexpr size_t kRecordHeaderBytes = 4 + 4 + 1;
constexpr uint8_t kTypeAgentMessage = 1;
// No single record is larger than this (the control plane's own limit is at most 64 MiB).
constexpr uint32_t kMaxRecordBytes = 64u << 20;
// A fully acknowledged segment this large is replaced by a fresh one.
constexpr uint64_t kRecycleBytes = 256 << 10;

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
uint32_t Crc(absl::string_view data) {
  return static_cast<uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
}

std::string Errno(const std::string& what) { return absl::StrCat(what, ": ", strerror(errno)); }

bool WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string EncodeHeader(uint32_t flags, uint64_t next_sequence) {
  std::string header(kMagic, 8);
  PutU32(&header, kFormat);
  PutU32(&header, flags);
  PutU64(&header, next_sequence);
  PutU32(&header, Crc(header));
  return header;
}

struct ParsedSegment {
  bool header_ok = false;
  uint32_t flags = 0;
  uint64_t next_sequence = 0;
  std::vector<v1::AgentMessage> messages;
  uint64_t corrupt = 0;
};

// Reads records from `data`; a damaged stretch is skipped by looking for the next offset where
// a whole record with a matching checksum starts.
ParsedSegment ParseSegment(const std::string& data) {
  ParsedSegment p;
  size_t pos = 0;
  if (data.size() >= kHeaderBytes && memcmp(data.data(), kMagic, 8) == 0 &&
      GetU32(data.data() + kHeaderBytes - 4) ==
          Crc(absl::string_view(data.data(), kHeaderBytes - 4)) &&
      GetU32(data.data() + 8) == kFormat) {
    p.header_ok = true;
    p.flags = GetU32(data.data() + 12);
    p.next_sequence = GetU64(data.data() + 16);
    pos = kHeaderBytes;
  } else {
    ++p.corrupt;
  }
  bool in_damage = !p.header_ok;
  while (pos + kRecordHeaderBytes <= data.size()) {
    const uint32_t len = GetU32(data.data() + pos);
    const uint32_t crc = GetU32(data.data() + pos + 4);
    // The type byte and the length are checked before the checksum, so resynchronising over a
    // damaged stretch costs a CRC only at plausible offsets.
    v1::AgentMessage m;
    const bool ok = len <= kMaxRecordBytes && pos + kRecordHeaderBytes + len <= data.size() &&
                    static_cast<uint8_t>(data[pos + 8]) == kTypeAgentMessage &&
                    Crc(absl::string_view(data.data() + pos + 8, 1 + len)) == crc &&
                    m.ParseFromArray(data.data() + pos + kRecordHeaderBytes, static_cast<int>(len));
    if (!ok) {
      if (!in_damage) ++p.corrupt;
      in_damage = true;
      ++pos;
      continue;
    }
    in_damage = false;
    p.messages.push_back(std::move(m));
    pos += kRecordHeaderBytes + len;
  }
  if (pos < data.size() && !in_damage) ++p.corrupt;  // a torn tail shorter than a header
  return p;
}

}  // namespace

std::string EncodeSpoolRecord(const v1::AgentMessage& m) {
  std::string payload;
  payload.push_back(static_cast<char>(kTypeAgentMessage));
  m.AppendToString(&payload);
  std::string out;
  out.reserve(8 + payload.size());
  PutU32(&out, static_cast<uint32_t>(payload.size() - 1));
  PutU32(&out, Crc(payload));
  out += payload;
  return out;
}

absl::StatusOr<std::unique_ptr<Spool>> Spool::Open(const SpoolOptions& options,
                                                   Recovered* recovered) {
  const std::string& dir = options.directory;
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::FailedPreconditionError(Errno(absl::StrCat("spool.directory ", dir)));
  }
  std::unique_ptr<Spool> spool(new Spool(options));
  const std::string lock_path = absl::StrCat(dir, "/LOCK");
  spool->lock_fd_ = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (spool->lock_fd_ < 0) {
    return absl::FailedPreconditionError(Errno(absl::StrCat("spool.directory ", lock_path)));
  }
  if (flock(spool->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "spool.directory ", dir, ": in use by another agent (", lock_path, " is locked)"));
  }
  // Segments in write order.
  std::vector<std::pair<uint64_t, std::string>> files;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      absl::string_view n = e->d_name;
      uint64_t number;
      if (absl::EndsWith(n, ".seg.tmp")) {  // a Rewrite that did not finish
        unlink(absl::StrCat(dir, "/", n).c_str());
        continue;
      }
      if (n.size() == 24 && absl::EndsWith(n, ".seg") &&
          absl::SimpleAtoi(n.substr(0, 20), &number)) {
        files.emplace_back(number, absl::StrCat(dir, "/", n));
      }
    }
    closedir(d);
  } else {
    return absl::FailedPreconditionError(Errno(absl::StrCat("spool.directory ", dir)));
  }
  std::sort(files.begin(), files.end());

  std::vector<ParsedSegment> parsed;
  for (const auto& [number, path] : files) {
    // Bounded: no segment legitimately exceeds the spool's bound plus one record.
    absl::StatusOr<std::string> read =
        ReadRegularFile(path, std::max<uint64_t>(options.max_bytes, 1 << 20) + kMaxRecordBytes);
    const std::string data = read.ok() ? std::move(*read) : std::string();
    ParsedSegment p;
    if (!read.ok()) {
      p.corrupt = 1;
    } else {
      p = ParseSegment(data);
    }
    if (p.header_ok && (p.flags & kFlagSupersedes)) {
      // A Rewrite completed: what came before it is replaced (a crash may have left it).
      parsed.clear();
      while (!spool->segments_.empty()) spool->DeleteSegment(0);
    }
    Segment seg{path};
    seg.bytes = data.size();
    seg.records = p.messages.size();
    for (const auto& m : p.messages)
      seg.max_sequence = std::max(seg.max_sequence, DurableSequence(m));
    spool->segments_.push_back(seg);
    spool->next_number_ = number + 1;
    parsed.push_back(std::move(p));
  }
  uint64_t next_sequence = 0;
  for (ParsedSegment& p : parsed) {
    recovered->corrupt += p.corrupt;
    next_sequence = std::max(next_sequence, p.next_sequence);
    for (v1::AgentMessage& m : p.messages) {
      const uint64_t seq = DurableSequence(m);
      if (seq != 0) next_sequence = std::max(next_sequence, seq + 1);
      recovered->messages.push_back(std::move(m));
    }
  }
  // Numbered and unnumbered records never mix (numbering rewrites the spool); if damage made
  // them appear to, keep the order and let the outbox number what has no number.
  recovered->next_sequence = next_sequence;
  for (const Segment& s : spool->segments_) spool->total_bytes_ += s.bytes;
  // Append to a fresh segment: the last one may end in a torn record. If that fails (a full
  // disk), the agent still starts; Append tries again.
  if (absl::Status s = spool->StartSegment(next_sequence, /*supersedes=*/false); !s.ok()) {
    log::Warn("spool: cannot start a segment yet; will retry on the next write", {{"error", s}});
  }
  return spool;
}

Spool::~Spool() {
  if (active_fd_ >= 0) close(active_fd_);
  if (lock_fd_ >= 0) close(lock_fd_);
}

absl::Status Spool::StartSegment(uint64_t next_sequence, bool supersedes) {
  const uint64_t number = next_number_++;
  const std::string path = absl::StrFormat("%s/%020d.seg", options_.directory, number);
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return absl::UnavailableError(Errno(path));
  const std::string header = EncodeHeader(supersedes ? kFlagSupersedes : 0, next_sequence);
  if (!WriteAll(fd, header) || (options_.fsync && fdatasync(fd) != 0)) {
    absl::Status s = absl::UnavailableError(Errno(path));
    close(fd);
    unlink(path.c_str());
    return s;
  }
  SyncDirectory();
  if (active_fd_ >= 0) close(active_fd_);
  active_fd_ = fd;
  Segment seg{path};
  seg.bytes = header.size();
  segments_.push_back(seg);
  total_bytes_ += seg.bytes;
  return absl::OkStatus();
}

void Spool::DeleteSegment(size_t index) {
  Segment& seg = segments_[index];
  unlink(seg.path.c_str());
  total_bytes_ -= std::min(total_bytes_, seg.bytes);
  segments_.erase(segments_.begin() + static_cast<std::ptrdiff_t>(index));
}

void Spool::SyncDirectory() {
  if (!options_.fsync) return;
  int fd = open(options_.directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)fsync(fd);
  close(fd);
}

absl::Status Spool::Append(const v1::AgentMessage& m, uint64_t next_sequence) {
  const uint64_t segment_bytes = std::max<uint64_t>(options_.max_bytes / 8, 4096);
  if (active_fd_ < 0 || (segments_.back().records > 0 && segments_.back().bytes >= segment_bytes)) {
    if (absl::Status s = StartSegment(next_sequence, /*supersedes=*/false); !s.ok()) return s;
  }
  const std::string record = EncodeSpoolRecord(m);
  Segment& seg = segments_.back();
  if (!WriteAll(active_fd_, record) || (options_.fsync && fdatasync(active_fd_) != 0)) {
    absl::Status s = absl::UnavailableError(Errno(seg.path));
    // Cut a partial record off, so the next one starts clean.
    (void)ftruncate(active_fd_, static_cast<off_t>(seg.bytes));
    return s;
  }
  seg.bytes += record.size();
  seg.records += 1;
  seg.max_sequence = std::max(seg.max_sequence, DurableSequence(m));
  total_bytes_ += record.size();
  return absl::OkStatus();
}

void Spool::Forget(uint64_t acked, uint64_t next_sequence) {
  auto done = [acked](const Segment& s) {
    return s.records == 0 || (s.max_sequence != 0 && s.max_sequence <= acked);
  };
  // The segment being appended to stays (it carries the counter); without one, all may go.
  const size_t keep = active_fd_ >= 0 ? 1 : 0;
  while (segments_.size() > keep && done(segments_.front())) DeleteSegment(0);
  if (active_fd_ >= 0 && segments_.size() == 1 && segments_.back().records > 0 &&
      done(segments_.back()) && segments_.back().bytes >= kRecycleBytes) {
    if (StartSegment(next_sequence, /*supersedes=*/false).ok()) DeleteSegment(0);
  }
}

absl::Status Spool::Rewrite(const std::deque<v1::AgentMessage>& messages, uint64_t next_sequence) {
  // Written under a temporary name and renamed into place, so a crash leaves either the old
  // segments or the complete new one, which supersedes them.
  const uint64_t number = next_number_++;
  const std::string path = absl::StrFormat("%s/%020d.seg", options_.directory, number);
  const std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::UnavailableError(Errno(tmp));
  const std::string header = EncodeHeader(kFlagSupersedes, next_sequence);
  Segment seg{path};
  bool ok = WriteAll(fd, header);
  seg.bytes = header.size();
  for (const v1::AgentMessage& m : messages) {
    if (!ok) break;
    const std::string record = EncodeSpoolRecord(m);
    ok = WriteAll(fd, record);
    seg.bytes += record.size();
    seg.records += 1;
    seg.max_sequence = std::max(seg.max_sequence, DurableSequence(m));
  }
  ok = ok && (!options_.fsync || fdatasync(fd) == 0) && rename(tmp.c_str(), path.c_str()) == 0;
  if (!ok) {
    absl::Status s = absl::UnavailableError(Errno(tmp));
    close(fd);
    unlink(tmp.c_str());
    return s;
  }
  SyncDirectory();
  close(fd);
  while (!segments_.empty()) DeleteSegment(0);
  segments_.push_back(seg);
  total_bytes_ = seg.bytes;
  // Appends go to a fresh segment after it.
  if (active_fd_ >= 0) close(active_fd_);
  active_fd_ = -1;
  return StartSegment(next_sequence, /*supersedes=*/false);
}

}  // namespace vigie::agent
