// postgresql://user[:password]@host[:port]/database[?sslmode=MODE] checks with libpq's
// non-blocking API on the check loop: the host's addresses come from c-ares and reach libpq
// as hostaddr (libpq never resolves, so no thread blocks), then SELECT 1. Reports the server's
// version, and TLS when used.
#include <libpq-fe.h>

#include <memory>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/checks/address_probe.h"
#include "agent/checks/event_loop.h"
#include "common/status.h"

namespace vigie::agent::checks {
namespace {

struct Settings {
  std::string user;
  std::string database;
  std::string sslmode = "prefer";
};

absl::StatusOr<Settings> Parse(const CheckSpec& s, const std::string& field) {
  Settings out;
  const Target& t = s.parsed;
  // The target without its query: a libpq-style ?password= must not be echoed.
  const std::string bad =
      absl::StrCat(field, ".target: \"", s.target.substr(0, s.target.find('?')), "\"");
  if (t.host.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(bad, " needs a host, e.g. postgresql://monitor@db:5432/app"));
  }
  out.user = t.userinfo.substr(0, t.userinfo.find(':'));
  std::string path = t.path_and_query, query;
  if (size_t q = path.find('?'); q != std::string::npos) {
    query = path.substr(q + 1);
    path.resize(q);
  }
  out.database = std::string(absl::StripPrefix(path, "/"));
  if (absl::StrContains(out.database, '/')) {
    return absl::InvalidArgumentError(absl::StrCat(bad, ": the path is one database name"));
  }
  const std::string& mode = s.config.postgresql().sslmode();
  for (absl::string_view kv : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    if (p.first != "sslmode") {
      return absl::InvalidArgumentError(absl::StrCat(bad, ": unknown parameter \"", p.first,
                                                     "\" (only sslmode; see postgresql:)"));
    }
    if (!mode.empty() && mode != p.second) {
      return absl::InvalidArgumentError(
          absl::StrCat(bad, ": sslmode differs from postgresql.sslmode \"", mode, "\""));
    }
    out.sslmode = p.second;
  }
  if (!mode.empty()) out.sslmode = mode;
  static const char* const kModes[] = {"disable", "allow",     "prefer",
                                       "require", "verify-ca", "verify-full"};
  if (std::find(std::begin(kModes), std::end(kModes), out.sslmode) == std::end(kModes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".postgresql.sslmode: \"", out.sslmode,
                     "\" is not disable, allow, prefer, require, verify-ca or verify-full"));
  }
  return out;
}

absl::Status Validate(CheckSpec* s, const std::string& field) {
  VIGIE_RETURN_IF_ERROR(Parse(*s, field).status());
  return TakePassword(s, s->config.postgresql().password_file(),
                      absl::StrCat(field, ".postgresql.password_file"));
}

// libpq's message, first line: "connection to server at "10.0.0.5", port 5432 failed: ...".
std::string FirstLine(const char* message) {
  absl::string_view m = message != nullptr ? message : "";
  m = absl::StripAsciiWhitespace(m);
  std::string line(m.substr(0, m.find('\n')));
  return line.empty() ? "unknown error" : line;
}

class PostgresqlProbe : public AddressProbe {
 public:
  using AddressProbe::AddressProbe;
  ~PostgresqlProbe() override {
    // Still libpq's socket (the run was abandoned at its deadline): not another probe's.
    if (fd_ >= 0 && conn_ != nullptr && PQsocket(conn_) == fd_) env_->loop->Unwatch(fd_);
    if (conn_ != nullptr) PQfinish(conn_);
  }

 private:
  void Connect(const std::vector<std::string>& addresses) override {
    const Settings settings = *Parse(spec_, "");
    // libpq tries each hostaddr in turn; host (repeated) is the name TLS verifies.
    std::vector<std::string> hosts(addresses.size(), spec_.parsed.host);
    const std::string host = absl::StrJoin(hosts, ",");
    const std::string hostaddr = absl::StrJoin(addresses, ",");
    const std::string port = absl::StrCat(spec_.parsed.port);
    std::vector<std::pair<const char*, const char*>> params = {
        {"host", host.c_str()},
        {"hostaddr", hostaddr.c_str()},
        {"port", port.c_str()},
        {"sslmode", settings.sslmode.c_str()},
        {"gssencmode", "disable"},  // no Kerberos lookups on the loop
        {"passfile", "/dev/null"},  // only the check's own password, never the agent's
        {"application_name", "vigie-agent"},
    };
    if (!settings.user.empty()) params.emplace_back("user", settings.user.c_str());
    if (!settings.database.empty()) params.emplace_back("dbname", settings.database.c_str());
    if (!spec_.password.empty()) params.emplace_back("password", spec_.password.c_str());
    const std::string& ca = spec_.config.postgresql().ca_file();
    if (!ca.empty()) params.emplace_back("sslrootcert", ca.c_str());
    std::vector<const char*> keys, values;
    for (const auto& [k, v] : params) {
      keys.push_back(k);
      values.push_back(v);
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);
    phase_ = absl::StrCat("connecting to ", spec_.parsed.HostPort());
    conn_ = PQconnectStartParams(keys.data(), values.data(), 0);
    if (conn_ == nullptr) {
      Finish(v1::CHECK_STATUS_UNKNOWN, "libpq: out of memory");
      return;
    }
    if (PQstatus(conn_) == CONNECTION_BAD) {
      Finish(v1::CHECK_STATUS_CRITICAL, FirstLine(PQerrorMessage(conn_)));
      return;
    }
    WaitFor(PGRES_POLLING_WRITING, [this] { ConnectStep(); });
  }

  // Waits until libpq's current socket is ready as `want` says, then calls `next`.
  void WaitFor(PostgresPollingStatusType want, std::function<void()> next) {
    const int fd = PQsocket(conn_);
    if (fd != fd_ && fd_ >= 0) env_->loop->Unwatch(fd_);  // libpq closed it for another
    fd_ = fd;
    if (fd_ < 0) {
      Finish(v1::CHECK_STATUS_CRITICAL, FirstLine(PQerrorMessage(conn_)));
      return;
    }
    env_->loop->Watch(fd_, want == PGRES_POLLING_READING, want == PGRES_POLLING_WRITING,
                      [next = std::move(next)](bool, bool) { next(); });
  }

  void ConnectStep() {
    switch (PQconnectPoll(conn_)) {
      case PGRES_POLLING_FAILED:
        Finish(v1::CHECK_STATUS_CRITICAL, FirstLine(PQerrorMessage(conn_)));
        return;
      case PGRES_POLLING_OK:
        Query();
        return;
      case PGRES_POLLING_READING:
        WaitFor(PGRES_POLLING_READING, [this] { ConnectStep(); });
        return;
      default:
        WaitFor(PGRES_POLLING_WRITING, [this] { ConnectStep(); });
        return;
    }
  }

  void Query() {
    phase_ = "waiting for SELECT 1";
    if (PQsetnonblocking(conn_, 1) != 0 || PQsendQuery(conn_, "SELECT 1") != 1) {
      Finish(v1::CHECK_STATUS_CRITICAL, FirstLine(PQerrorMessage(conn_)));
      return;
    }
    Flush();
  }

  void Flush() {
    const int r = PQflush(conn_);
    if (r < 0) {
      Finish(v1::CHECK_STATUS_CRITICAL, FirstLine(PQerrorMessage(conn_)));
    } else if (r == 1) {
      WaitFor(PGRES_POLLING_WRITING, [this] { Flush(); });
    } else {
      WaitFor(PGRES_POLLING_READING, [this] { Read(); });
    }
  }

  void Read() {
    if (PQconsumeInput(conn_) != 1) {
      Finish(v1::CHECK_STATUS_CRITICAL, FirstLine(PQerrorMessage(conn_)));
      return;
    }
    while (!PQisBusy(conn_)) {
      PGresult* result = PQgetResult(conn_);
      if (result == nullptr) {
        Judge();
        return;
      }
      if (PQresultStatus(result) != PGRES_TUPLES_OK && error_.empty()) {
        error_ = FirstLine(PQresultErrorMessage(result));
      }
      PQclear(result);
    }
  }

  void Judge() {
    if (!error_.empty()) {
      Finish(v1::CHECK_STATUS_CRITICAL, absl::StrCat("SELECT 1 failed: ", error_));
      return;
    }
    Outcome o;
    o.status = v1::CHECK_STATUS_OK;
    const char* version = PQparameterStatus(conn_, "server_version");
    const std::string v = version != nullptr ? std::string(version).substr(0, 64) : "unknown";
    o.message = absl::StrCat("SELECT 1 in ", Elapsed(), " (PostgreSQL ", v);
    o.info.push_back({"probe_postgresql_version_info", {"version", v}});
    if (PQsslInUse(conn_) != 0) {
      const char* protocol = PQsslAttribute(conn_, "protocol");
      const std::string tls = protocol != nullptr ? protocol : "TLS";
      absl::StrAppend(&o.message, ", ", tls);
      o.info.push_back({"probe_tls_version_info", {"version", tls}});
    }
    absl::StrAppend(&o.message, ")");
    Finish(std::move(o));
  }

  // libpq closes its socket when a connection fails: forget it before its number is reused.
  void Finishing() override {
    if (fd_ >= 0) env_->loop->Unwatch(fd_);
    fd_ = -1;
  }

  PGconn* conn_ = nullptr;
  int fd_ = -1;
  std::string error_;
};

}  // namespace

Protocol PostgresqlProtocol() {
  return {Validate, [](const CheckSpec& spec, ProbeEnv* env, absl::Time deadline) {
            return std::unique_ptr<Probe>(new PostgresqlProbe(spec, env, deadline));
          }};
}

}  // namespace vigie::agent::checks
