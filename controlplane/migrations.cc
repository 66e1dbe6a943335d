// Schema migrations, applied in order at start-up. Never edit a released migration: add one.
#include "controlplane/pg_store.h"

namespace vigie::controlplane {

const std::vector<Migration>& Migrations() {
  static const std::vector<Migration>* const migrations = new std::vector<Migration>{
      {1, "inventory, series, samples, checks, service events, alerts, outbox", R"sql(
CREATE TABLE agents (
  agent_id            text PRIMARY KEY,
  hostname            text NOT NULL DEFAULT '',
  labels              jsonb NOT NULL DEFAULT '{}',
  version             text NOT NULL DEFAULT '',
  connected           boolean NOT NULL DEFAULT false,
  first_seen          timestamptz NOT NULL DEFAULT now(),
  last_seen           timestamptz NOT NULL DEFAULT now(),
  -- Every durable message of this agent with a sequence <= this is stored exactly once.
  committed_sequence  bigint NOT NULL DEFAULT 0
);

CREATE TABLE series (
  id        bigserial PRIMARY KEY,
  agent_id  text NOT NULL REFERENCES agents (agent_id) ON DELETE CASCADE,
  name      text NOT NULL,
  labels    jsonb NOT NULL,
  UNIQUE (agent_id, name, labels)
);

CREATE TABLE samples (
  series_id  bigint NOT NULL,
  ts         timestamptz NOT NULL,
  value      double precision NOT NULL,
  -- The agent's sequence number of the MetricBatch that carried the sample.
  batch_seq  bigint NOT NULL
);
CREATE INDEX samples_series_ts ON samples (series_id, ts);

CREATE TABLE check_results (
  agent_id         text NOT NULL,
  name             text NOT NULL,
  target           text NOT NULL,
  status           text NOT NULL,
  latency_seconds  double precision NOT NULL,
  message          text NOT NULL,
  labels           jsonb NOT NULL,
  ts               timestamptz NOT NULL,
  batch_seq        bigint NOT NULL
);
CREATE INDEX check_results_agent_name_ts ON check_results (agent_id, name, ts);

CREATE TABLE service_events (
  agent_id   text NOT NULL,
  service    text NOT NULL,
  kind       text NOT NULL,
  exit_code  integer NOT NULL,
  message    text NOT NULL,
  ts         timestamptz NOT NULL,
  batch_seq  bigint NOT NULL
);
CREATE INDEX service_events_agent_ts ON service_events (agent_id, ts);

CREATE TABLE alerts (
  rule             text NOT NULL,
  fingerprint      text NOT NULL,
  labels           jsonb NOT NULL,
  annotations      jsonb NOT NULL,
  severity         text NOT NULL,
  state            text NOT NULL CHECK (state IN ('firing', 'resolved')),
  value            double precision NOT NULL,
  active_since     timestamptz NOT NULL,
  resolved_at      timestamptz,
  acknowledged_by  text NOT NULL DEFAULT '',
  PRIMARY KEY (rule, fingerprint)
);

CREATE TABLE alert_events (
  id               bigserial PRIMARY KEY,
  rule             text NOT NULL,
  fingerprint      text NOT NULL,
  status           text NOT NULL,
  value            double precision NOT NULL,
  at               timestamptz NOT NULL,
  idempotency_key  text NOT NULL UNIQUE
);

CREATE TABLE notification_outbox (
  id               bigserial PRIMARY KEY,
  idempotency_key  text NOT NULL UNIQUE,
  request          jsonb NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  attempts         integer NOT NULL DEFAULT 0,
  delivered_at     timestamptz,
  last_error       text NOT NULL DEFAULT ''
);
CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at)
  WHERE delivered_at IS NULL;
)sql"},
      {2, "agents.connection_id: the stream that last registered the agent", R"sql(
ALTER TABLE agents ADD COLUMN connection_id text NOT NULL DEFAULT '';
)sql"},
      {3, "tokens: agent, enrolment, viewer and admin credentials, stored as SHA-256", R"sql(
CREATE TABLE tokens (
  id           text PRIMARY KEY,
  kind         text NOT NULL CHECK (kind IN ('agent', 'enrolment', 'viewer', 'admin')),
  agent_id     text NOT NULL DEFAULT '',
  sha256       bytea NOT NULL UNIQUE CHECK (length(sha256) = 32),
  description  text NOT NULL DEFAULT '',
  created_by   text NOT NULL DEFAULT '',
  created_at   timestamptz NOT NULL DEFAULT now(),
  revoked_at   timestamptz
);
)sql"},
  };
  return *migrations;
}

}  // namespace vigie::controlplane
