#include "notifier/delivery_log.h"

#include <pqxx/pqxx>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/status.h"
#include "google/protobuf/util/json_util.h"

namespace vigie::notifier {

class LogConnection : public pqxx::connection {
 public:
  using pqxx::connection::connection;
};

namespace {

constexpr char kMigration1[] = R"sql(
CREATE TABLE IF NOT EXISTS notifier_keys (
  key          text PRIMARY KEY,
  accepted_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS notifier_keys_accepted ON notifier_keys (accepted_at);
CREATE TABLE IF NOT EXISTS notifier_deliveries (
  key           text NOT NULL,
  target        text NOT NULL,   -- "<receiver>/<channel>[<i>]"
  receiver      text NOT NULL,
  channel       text NOT NULL,
  status        text NOT NULL CHECK (status IN ('pending', 'retrying', 'sent', 'failed')),
  attempts      integer NOT NULL DEFAULT 0,
  last_error    text NOT NULL DEFAULT '',
  accepted_at   timestamptz NOT NULL,
  updated_at    timestamptz NOT NULL,
  notification  jsonb NOT NULL,
  PRIMARY KEY (key, target)
);
CREATE INDEX IF NOT EXISTS notifier_deliveries_updated ON notifier_deliveries (updated_at, key, target);
)sql";

// "skipped": never sent to that target (superseded, resolved before its firing was sent, rate
// limited). Rerun at every start: it is idempotent.
constexpr char kMigration2[] = R"sql(
ALTER TABLE notifier_deliveries DROP CONSTRAINT IF EXISTS notifier_deliveries_status_check;
ALTER TABLE notifier_deliveries ADD CONSTRAINT notifier_deliveries_status_check
  CHECK (status IN ('pending', 'retrying', 'sent', 'failed', 'skipped'));
)sql";

std::string PgTime(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%E6S+00", t, absl::UTCTimeZone());
}

}  // namespace

DeliveryLog::DeliveryLog(DeliveryLogOptions options, prometheus::Registry* registry)
    : Runnable("delivery-log"),
      options_(std::move(options)),
      dropped_(prometheus::BuildCounter()
                   .Name("vigie_notifier_log_dropped_total")
                   .Help("Delivery-log events dropped because the buffer was full (database "
                         "away too long); deliveries are not affected.")
                   .Register(*registry)
                   .Add({})),
      write_errors_(prometheus::BuildCounter()
                        .Name("vigie_notifier_log_write_errors_total")
                        .Help("Failed writes of the delivery log (retried).")
                        .Register(*registry)
                        .Add({})),
      buffered_(prometheus::BuildGauge()
                    .Name("vigie_notifier_log_buffered")
                    .Help("Delivery-log events waiting to be written.")
                    .Register(*registry)
                    .Add({})) {}

DeliveryLog::~DeliveryLog() {
  Stop();
  (void)Flush();
}

absl::Status DeliveryLog::Connect() {
  try {
    conn_ = std::make_unique<LogConnection>(options_.database_url);
    pqxx::nontransaction n(*conn_);
    n.exec0("SET application_name = 'vigie-notifier'");
    n.exec0("SET statement_timeout = '30s'");
    return absl::OkStatus();
  } catch (const std::exception& e) {
    conn_.reset();
    return absl::UnavailableError(absl::StrCat(
        "database_url ", log::RedactUrl(options_.database_url), ": cannot connect: ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<DeliveryLog>> DeliveryLog::Open(DeliveryLogOptions options,
                                                               prometheus::Registry* registry) {
  std::unique_ptr<DeliveryLog> log(new DeliveryLog(std::move(options), registry));
  MutexLock lock(&log->db_mu_);
  if (absl::Status s = log->Connect(); !s.ok()) return s;
  try {
    pqxx::work w(*log->conn_);
    w.exec("SELECT pg_advisory_xact_lock(7400101)");
    w.exec0(kMigration1);
    w.exec0(kMigration2);
    w.commit();
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("delivery log migration: ", e.what()));
  }
  return log;
}

void DeliveryLog::Push(Event e) {
  MutexLock lock(&mu_);
  if (buffer_.size() >= options_.max_buffer) {
    dropped_.Increment();
    return;
  }
  buffer_.push_back(std::move(e));
  buffered_.Set(static_cast<double>(buffer_.size()));
  if (buffer_.size() == 1) Wake();
}

void DeliveryLog::Accepted(const v1::NotifyRequest& request,
                           const std::vector<std::string>& targets) {
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(request.notification(), &json);
  const absl::Time now = absl::Now();
  Push({true, request.idempotency_key(), "", "pending", "", json, 0, now});
  for (const std::string& t : targets) {
    Push({true, request.idempotency_key(), t, "pending", "", json, 0, now});
  }
}

void DeliveryLog::Attempted(const std::string& key, const std::string& target,
                            const std::string& status, int attempts, const std::string& error) {
  // At most 1 KiB, cut on a UTF-8 character boundary (PostgreSQL refuses a broken one).
  size_t cut = std::min<size_t>(error.size(), 1024);
  while (cut < error.size() && cut > 0 && (static_cast<unsigned char>(error[cut]) & 0xC0) == 0x80) {
    --cut;
  }
  Push({false, key, target, status, error.substr(0, cut), "", attempts, absl::Now()});
}

void DeliveryLog::WriteOne(pqxx::transaction_base& w, const Event& e) {
  if (e.accepted && e.target.empty()) {
    w.exec_params0(
        "INSERT INTO notifier_keys (key, accepted_at) VALUES ($1, $2::timestamptz) "
        "ON CONFLICT DO NOTHING",
        e.key, PgTime(e.at));
  } else if (e.accepted) {
    const size_t slash = e.target.find('/');
    const size_t bracket = e.target.rfind('[');
    w.exec_params0(
        "INSERT INTO notifier_deliveries (key, target, receiver, channel, status, "
        "accepted_at, updated_at, notification) VALUES ($1, $2, $3, $4, 'pending', "
        "$5::timestamptz, $5::timestamptz, $6::jsonb) ON CONFLICT DO NOTHING",
        e.key, e.target, e.target.substr(0, slash), e.target.substr(slash + 1, bracket - slash - 1),
        PgTime(e.at), e.notification_json);
  } else {
    w.exec_params0(
        "UPDATE notifier_deliveries SET status = $3, attempts = $4, last_error = $5, "
        "updated_at = $6::timestamptz WHERE key = $1 AND target = $2",
        e.key, e.target, e.status, e.attempts, e.error, PgTime(e.at));
  }
}

absl::Status DeliveryLog::Write(const std::vector<Event>& events) {
  MutexLock lock(&db_mu_);
  if (!conn_ || !conn_->is_open()) VIGIE_RETURN_IF_ERROR(Connect());
  try {
    try {
      pqxx::work w(*conn_);
      for (const Event& e : events) WriteOne(w, e);
      w.commit();
      return absl::OkStatus();
    } catch (const pqxx::sql_error&) {
      // One event the database refuses (a NUL in JSON, say) must not wedge the log: write them
      // one by one, each in a savepoint, and drop (and count) those refused.
      pqxx::work w(*conn_);
      for (const Event& e : events) {
        try {
          pqxx::subtransaction sub(w, "event");
          WriteOne(sub, e);
          sub.commit();
        } catch (const pqxx::sql_error& err) {
          dropped_.Increment();
          log::Warn("delivery log refused an event; dropped",
                    {{"key", e.key}, {"error", err.what()}});
        }
      }
      w.commit();
      return absl::OkStatus();
    }
  } catch (const pqxx::broken_connection& e) {
    conn_.reset();
    return absl::UnavailableError(absl::StrCat("delivery log: connection lost: ", e.what()));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("delivery log: ", e.what()));
  }
}

absl::Status DeliveryLog::Flush() {
  std::vector<Event> batch;
  {
    MutexLock lock(&mu_);
    batch.assign(std::make_move_iterator(buffer_.begin()), std::make_move_iterator(buffer_.end()));
    buffer_.clear();
  }
  if (batch.empty()) return absl::OkStatus();
  absl::Status s = Write(batch);
  if (!s.ok()) {
    // Put them back in front, in order, within the bound.
    MutexLock lock(&mu_);
    for (auto it = batch.rbegin(); it != batch.rend(); ++it) {
      if (buffer_.size() >= options_.max_buffer) {
        dropped_.Increment();
        continue;
      }
      buffer_.push_front(std::move(*it));
    }
  }
  MutexLock lock(&mu_);
  buffered_.Set(static_cast<double>(buffer_.size()));
  return s;
}

void DeliveryLog::Run() {
  absl::Duration wait = absl::Milliseconds(200);
  do {
    absl::Status s = Flush();
    if (!s.ok()) {
      write_errors_.Increment();
      log::Warn("delivery log write failed; will retry", {{"error", s}});
      wait = std::min(wait * 2, absl::Seconds(10));
    } else {
      wait = absl::Milliseconds(200);
    }
    if (s.ok() && absl::Now() >= next_cleanup_) {
      MutexLock lock(&db_mu_);
      try {
        if (conn_) {
          pqxx::work w(*conn_);
          const std::string cutoff = PgTime(absl::Now() - options_.retention);
          w.exec_params0("DELETE FROM notifier_deliveries WHERE updated_at < $1::timestamptz",
                         cutoff);
          w.exec_params0("DELETE FROM notifier_keys WHERE accepted_at < $1::timestamptz", cutoff);
          w.commit();
        }
        next_cleanup_ = absl::Now() + absl::Hours(1);
      } catch (const std::exception& e) {
        conn_.reset();
      }
    }
  } while (WaitFor(wait));
}

absl::StatusOr<std::vector<std::string>> DeliveryLog::RecentKeys(size_t n) {
  MutexLock lock(&db_mu_);
  std::vector<std::string> out;
  try {
    if (!conn_) VIGIE_RETURN_IF_ERROR(Connect());
    pqxx::read_transaction t(*conn_);
    for (const pqxx::row& r :
         t.exec_params("SELECT key FROM (SELECT key, accepted_at FROM notifier_keys "
                       "ORDER BY accepted_at DESC LIMIT $1) k ORDER BY accepted_at",
                       static_cast<int64_t>(n))) {
      out.push_back(r[0].as<std::string>());
    }
  } catch (const std::exception& e) {
    conn_.reset();
    return absl::UnavailableError(absl::StrCat("delivery log: ", e.what()));
  }
  return out;
}

absl::StatusOr<v1::ListDeliveriesResponse> DeliveryLog::List(const v1::ListDeliveriesRequest& req) {
  const uint32_t page = req.page_size() == 0 ? 100 : req.page_size();
  if (page > 1000) {
    return absl::InvalidArgumentError(absl::StrCat("page_size: at most 1000, got ", page));
  }
  if (!req.status().empty() && req.status() != "pending" && req.status() != "retrying" &&
      req.status() != "sent" && req.status() != "failed" && req.status() != "skipped") {
    return absl::InvalidArgumentError(
        absl::StrCat("status: \"", absl::CHexEscape(req.status().substr(0, 64)),
                     "\" must be pending, retrying, sent, failed or skipped"));
  }
  // The page token: the last row's (updated_at in microseconds, key, target), base64url.
  int64_t after_us = INT64_MAX;
  std::string after_key, after_target;
  if (!req.page_token().empty()) {
    std::string raw;
    std::vector<std::string> parts;
    // Three base64url fields joined by '.', so keys may hold any byte.
    parts = absl::StrSplit(req.page_token(), '.');
    if (parts.size() != 3 || !absl::WebSafeBase64Unescape(parts[0], &raw) ||
        !absl::SimpleAtoi(raw, &after_us) || !absl::WebSafeBase64Unescape(parts[1], &after_key) ||
        !absl::WebSafeBase64Unescape(parts[2], &after_target)) {
      return absl::InvalidArgumentError("page_token: not a token this server gave");
    }
  }
  v1::ListDeliveriesResponse out;
  MutexLock lock(&db_mu_);
  try {
    if (!conn_) VIGIE_RETURN_IF_ERROR(Connect());
    pqxx::read_transaction t(*conn_);
    pqxx::result rows = t.exec_params(
        "SELECT key, receiver, channel, target, status, attempts, last_error, "
        "(extract(epoch from accepted_at) * 1000)::bigint, "
        "(extract(epoch from updated_at) * 1000000)::bigint, notification->>'rule', "
        "notification->>'fingerprint', notification->>'status' FROM notifier_deliveries "
        "WHERE ($1 = '' OR key = $1) AND ($2 = '' OR receiver = $2) AND ($3 = '' OR status = $3) "
        "AND ((extract(epoch from updated_at) * 1000000)::bigint, key, target) < ($4, $5, $6) "
        "ORDER BY updated_at DESC, key DESC, target DESC LIMIT $7",
        req.idempotency_key(), req.receiver(), req.status(), after_us, after_key, after_target,
        static_cast<int64_t>(page));
    for (const pqxx::row& r : rows) {
      v1::Delivery* d = out.add_deliveries();
      d->set_idempotency_key(r[0].as<std::string>());
      d->set_receiver(r[1].as<std::string>());
      d->set_channel(r[2].as<std::string>());
      d->set_target(r[3].as<std::string>());
      d->set_status(r[4].as<std::string>());
      d->set_attempts(r[5].as<uint32_t>());
      d->set_last_error(r[6].as<std::string>());
      d->set_accepted_at_ms(r[7].as<int64_t>());
      d->set_updated_at_ms(r[8].as<int64_t>() / 1000);
      d->set_rule(r[9].is_null() ? "" : r[9].as<std::string>());
      d->set_fingerprint(r[10].is_null() ? "" : r[10].as<std::string>());
      v1::Notification::Status st = v1::Notification::STATUS_UNSPECIFIED;
      if (!r[11].is_null()) v1::Notification::Status_Parse(r[11].as<std::string>(), &st);
      d->set_notification_status(st);
    }
    if (rows.size() == page) {
      const pqxx::row last = rows[rows.size() - 1];
      out.set_next_page_token(
          absl::StrCat(absl::WebSafeBase64Escape(absl::StrCat(last[8].as<int64_t>())), ".",
                       absl::WebSafeBase64Escape(last[0].as<std::string>()), ".",
                       absl::WebSafeBase64Escape(last[3].as<std::string>())));
    }
  } catch (const std::exception& e) {
    conn_.reset();
    return absl::UnavailableError(absl::StrCat("delivery log: ", e.what()));
  }
  return out;
}

}  // namespace vigie::notifier
