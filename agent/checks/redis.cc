// redis://[user:password@]host[:port] checks: connect (addresses from c-ares, a non-blocking
// socket of our own on the check loop), AUTH when there is a password, PING, and INFO server
// for the version. hiredis formats the commands and parses the replies; the loop does the I/O.
// Debian's hiredis 0.14 has no TLS, so rediss:// is refused at config time.
#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/checks/address_probe.h"
#include "agent/checks/event_loop.h"
#include "common/status.h"

namespace vigie::agent::checks {
namespace {

constexpr size_t kMaxReplyBytes = 1 << 20;  // INFO server is ~1 KiB; a hostile peer gets 1 MiB

absl::Status Validate(CheckSpec* s, const std::string& field) {
  const Target& t = s->parsed;
  if (t.host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".target: \"", s->target,
                                                   "\" needs a host, e.g. redis://10.0.0.5:6379"));
  }
  if (!t.path_and_query.empty() && t.path_and_query != "/" && t.path_and_query != "/0") {
    return absl::InvalidArgumentError(absl::StrCat(field, ".target: \"", s->target,
                                                   "\": a redis target has no path or parameters"));
  }
  return TakePassword(s, s->config.redis().password_file(),
                      absl::StrCat(field, ".redis.password_file"));
}

struct ReaderDeleter {
  void operator()(redisReader* r) const { redisReaderFree(r); }
};
struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

// Appends one command in the protocol's encoding.
void AppendCommand(std::initializer_list<std::string> args, std::string* out) {
  std::vector<const char*> argv;
  std::vector<size_t> lengths;
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lengths.push_back(a.size());
  }
  char* cmd = nullptr;
  const int n =
      redisFormatCommandArgv(&cmd, static_cast<int>(argv.size()), argv.data(), lengths.data());
  if (n > 0) out->append(cmd, static_cast<size_t>(n));
  redisFreeCommand(cmd);
}

std::string ReplyText(const redisReply& r) {
  return std::string(r.str != nullptr ? r.str : "", r.str != nullptr ? r.len : 0);
}

class RedisProbe : public AddressProbe {
 public:
  using AddressProbe::AddressProbe;
  ~RedisProbe() override { Close(); }

 private:
  void Connect(const std::vector<std::string>& addresses) override {
    addresses_ = addresses;
    const std::string& user_info = spec_.parsed.userinfo;
    const std::string user = user_info.substr(0, user_info.find(':'));
    if (!spec_.password.empty()) {
      if (user.empty()) {
        AppendCommand({"AUTH", spec_.password}, &out_);
      } else {
        AppendCommand({"AUTH", user, spec_.password}, &out_);
      }
      ++expected_;
    }
    AppendCommand({"PING"}, &out_);
    AppendCommand({"INFO", "server"}, &out_);
    expected_ += 2;
    TryNext();
  }

  // Connects to the next address, or ends the run with why none answered.
  void TryNext() {
    Close();
    if (next_ >= addresses_.size()) {
      Finish(v1::CHECK_STATUS_CRITICAL, absl::StrCat(last_error_, " (", Elapsed(), ")"));
      return;
    }
    const std::string& address = addresses_[next_++];
    where_ = JoinHostPort(address, spec_.parsed.port);
    phase_ = absl::StrCat("connecting to ", where_);
    sockaddr_storage sa{};
    socklen_t len = 0;
    if (auto* v4 = reinterpret_cast<sockaddr_in*>(&sa);
        inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
      v4->sin_family = AF_INET;
      v4->sin_port = htons(static_cast<uint16_t>(spec_.parsed.port));
      len = sizeof(sockaddr_in);
    } else if (auto* v6 = reinterpret_cast<sockaddr_in6*>(&sa);
               inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
      v6->sin6_family = AF_INET6;
      v6->sin6_port = htons(static_cast<uint16_t>(spec_.parsed.port));
      len = sizeof(sockaddr_in6);
    } else {
      last_error_ = absl::StrCat("not an address: ", address);
      TryNext();
      return;
    }
    fd_ = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      Finish(v1::CHECK_STATUS_UNKNOWN, absl::StrCat("socket: ", std::strerror(errno)));
      return;
    }
    if (connect(fd_, reinterpret_cast<sockaddr*>(&sa), len) != 0 && errno != EINPROGRESS) {
      last_error_ = absl::StrCat("connection to ", where_, " failed: ", std::strerror(errno));
      TryNext();
      return;
    }
    env_->loop->Watch(fd_, false, true, [this](bool, bool) { Connected(); });
  }

  void Connected() {
    int error = 0;
    socklen_t len = sizeof(error);
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &len);
    if (error != 0) {
      last_error_ = absl::StrCat("connection to ", where_, " failed: ", std::strerror(error));
      TryNext();
      return;
    }
    phase_ = absl::StrCat("waiting for ", where_, " to answer");
    reader_.reset(redisReaderCreate());
    Pump();
  }

  // Writes what is left of the commands and reads replies, as the socket allows.
  void Pump() {
    while (!out_.empty()) {
      const ssize_t n = send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
      if (n < 0) {
        Finish(v1::CHECK_STATUS_CRITICAL,
               absl::StrCat("sending to ", where_, " failed: ", std::strerror(errno)));
        return;
      }
      out_.erase(0, static_cast<size_t>(n));
    }
    char buf[16384];
    for (;;) {
      const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
      if (n <= 0) {
        Finish(v1::CHECK_STATUS_CRITICAL,
               absl::StrCat(where_, " closed the connection",
                            n < 0 ? absl::StrCat(": ", std::strerror(errno)) : std::string(),
                            " before answering"));
        return;
      }
      received_ += static_cast<size_t>(n);
      if (received_ > kMaxReplyBytes ||
          redisReaderFeed(reader_.get(), buf, static_cast<size_t>(n)) != REDIS_OK) {
        Finish(v1::CHECK_STATUS_CRITICAL, absl::StrCat(where_, " does not speak Redis"));
        return;
      }
      if (!TakeReplies()) return;
    }
    env_->loop->Watch(fd_, true, !out_.empty(), [this](bool, bool) { Pump(); });
  }

  // Judges the complete replies; false once the run has ended.
  bool TakeReplies() {
    for (;;) {
      void* raw = nullptr;
      if (redisReaderGetReply(reader_.get(), &raw) != REDIS_OK) {
        Finish(v1::CHECK_STATUS_CRITICAL, absl::StrCat(where_, " does not speak Redis"));
        return false;
      }
      if (raw == nullptr) return true;
      Reply reply(static_cast<redisReply*>(raw));
      const bool auth = !spec_.password.empty() && replies_ == 0;
      const bool info = ++replies_ == expected_;
      if (reply->type == REDIS_REPLY_ERROR) {
        std::string why = ReplyText(*reply);
        if (absl::StartsWith(why, "NOAUTH")) {
          absl::StrAppend(&why, " (set redis.password_file, or redis://:PASSWORD@host)");
        }
        Finish(v1::CHECK_STATUS_CRITICAL, absl::StrCat(auth   ? "AUTH failed: "
                                                       : info ? "INFO failed: "
                                                              : "PING failed: ",
                                                       why));
        return false;
      }
      if (!auth && !info && ReplyText(*reply) != "PONG") {
        Finish(v1::CHECK_STATUS_CRITICAL,
               absl::StrCat("PING answered \"", ReplyText(*reply).substr(0, 64),
                            "\" instead of PONG"));
        return false;
      }
      if (info) {
        Outcome o;
        o.status = v1::CHECK_STATUS_OK;
        std::string version;
        for (absl::string_view line : absl::StrSplit(ReplyText(*reply), absl::ByAnyChar("\r\n"))) {
          if (absl::ConsumePrefix(&line, "redis_version:")) version = std::string(line);
        }
        o.message = absl::StrCat("PONG in ", Elapsed());
        if (!version.empty()) {
          absl::StrAppend(&o.message, " (Redis ", version, ")");
          o.info.push_back({"probe_redis_version_info", {"version", version.substr(0, 64)}});
        }
        Finish(std::move(o));
        return false;
      }
    }
  }

  void Close() {
    if (fd_ >= 0) {
      env_->loop->Unwatch(fd_);
      close(fd_);
      fd_ = -1;
    }
  }

  std::vector<std::string> addresses_;
  size_t next_ = 0;
  std::string last_error_ = "no address";
  std::string where_;
  int fd_ = -1;
  std::string out_;
  std::unique_ptr<redisReader, ReaderDeleter> reader_;
  size_t received_ = 0;
  int expected_ = 0;
  int replies_ = 0;
};

}  // namespace

Protocol RedisProtocol() {
  return {[](CheckSpec* s, const std::string& field) {
            if (s->parsed.scheme == "rediss") {
              return absl::InvalidArgumentError(absl::StrCat(
                  field, ".target: \"", s->target,
                  "\": rediss:// (Redis over TLS) is not supported: Debian 12's hiredis 0.14 "
                  "has no TLS. Check the TLS port with tcp://host:port and tcp: {tls: true}"));
            }
            return Validate(s, field);
          },
          [](const CheckSpec& spec, ProbeEnv* env, absl::Time deadline) {
            return std::unique_ptr<Probe>(new RedisProbe(spec, env, deadline));
          }};
}

}  // namespace vigie::agent::checks
