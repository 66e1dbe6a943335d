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
      {4,
       "compact samples: layouts and blocks, daily partitions, rollups, daily check and service "
       "rows",
       R"sql(
-- Partitions are named <parent>_pYYYYMMDD (daily) or <parent>_pYYYYMM (monthly), bounded in UTC.
-- The control plane creates them ahead of time (and on demand for late data) and drops whole
-- partitions past retention; this function is the one place that makes them.
CREATE FUNCTION vigie_ensure_partition(parent text, period text, day date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  lower date := CASE period WHEN 'month' THEN date_trunc('month', day)::date ELSE day END;
  upper date := CASE period WHEN 'month' THEN (lower + interval '1 month')::date ELSE day + 1 END;
  name text := parent || '_p' || to_char(lower, CASE period WHEN 'month' THEN 'YYYYMM'
                                                            ELSE 'YYYYMMDD' END);
BEGIN
  IF to_regclass(name) IS NULL THEN
    EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                   name, parent, lower::timestamp AT TIME ZONE 'UTC',
                   upper::timestamp AT TIME ZONE 'UTC');
  END IF;
  RETURN name;
END $$;

-- A layout: the series of a batch, in order. Blocks and rollups refer to one.
CREATE TABLE series_layouts (
  id          bigserial PRIMARY KEY,
  agent_id    text NOT NULL REFERENCES agents (agent_id) ON DELETE CASCADE,
  hash        bigint NOT NULL,
  series_ids  bigint[] NOT NULL
);
CREATE INDEX series_layouts_agent_hash ON series_layouts (agent_id, hash);

-- Up to 240 consecutive values of one durable batch: vals[i] is the series at position
-- first_pos + i (1-based) of the layout, at ts + offsets_ms[i] milliseconds (offsets_ms NULL:
-- all at ts). The view `samples` below shows them as one row per sample.
CREATE TABLE sample_blocks (
  agent_id    text NOT NULL,
  ts          timestamptz NOT NULL,
  batch_seq   bigint NOT NULL,
  layout_id   bigint NOT NULL,
  first_pos   integer NOT NULL,
  vals        float8[] NOT NULL,
  offsets_ms  integer[]
) PARTITION BY RANGE (ts);
CREATE INDEX sample_blocks_agent_ts ON sample_blocks (agent_id, ts);

-- Per series of an agent and 5-minute bucket: min, max, sum, last and count, as arrays aligned
-- to a layout. Written once a bucket is complete; rewritten when late samples land in it.
CREATE TABLE sample_rollups (
  agent_id   text NOT NULL,
  bucket     timestamptz NOT NULL,
  layout_id  bigint NOT NULL,
  mins       float8[] NOT NULL,
  maxs       float8[] NOT NULL,
  sums       float8[] NOT NULL,
  lasts      float8[] NOT NULL,
  counts     integer[] NOT NULL,
  PRIMARY KEY (agent_id, bucket)
) PARTITION BY RANGE (bucket);

-- Rollups are complete for every bucket before rolled_up_to; buckets before it that received
-- late samples wait in rollup_dirty.
ALTER TABLE agents ADD COLUMN rolled_up_to timestamptz;
CREATE TABLE rollup_dirty (
  agent_id  text NOT NULL,
  bucket    timestamptz NOT NULL,
  PRIMARY KEY (agent_id, bucket)
);

-- Old rows move into the new layout: one single-series layout per series (hash 0, never
-- matched by ingest), one block per sample.
DO $$
DECLARE d date;
BEGIN
  FOR d IN SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date FROM samples LOOP
    PERFORM vigie_ensure_partition('sample_blocks', 'day', d);
  END LOOP;
END $$;
INSERT INTO series_layouts (agent_id, hash, series_ids)
  SELECT agent_id, 0, ARRAY[id] FROM series WHERE id IN (SELECT DISTINCT series_id FROM samples);
INSERT INTO sample_blocks (agent_id, ts, batch_seq, layout_id, first_pos, vals)
  SELECT l.agent_id, x.ts, x.batch_seq, l.id, 0, ARRAY[x.value]
  FROM samples x JOIN series_layouts l ON l.hash = 0 AND l.series_ids = ARRAY[x.series_id];
DROP TABLE samples;

-- One row per sample, as before: for SQL users and tests. Not for bulk reads.
CREATE VIEW samples AS
  SELECT l.series_ids[b.first_pos + i] AS series_id,
         b.ts + coalesce(b.offsets_ms[i], 0) * interval '1 millisecond' AS ts,
         b.vals[i] AS value, b.batch_seq, b.agent_id
  FROM sample_blocks b JOIN series_layouts l ON l.id = b.layout_id
  CROSS JOIN LATERAL generate_subscripts(b.vals, 1) AS i;

-- Check results and service events: partitioned by day like samples.
ALTER TABLE check_results RENAME TO check_results_v1;
ALTER INDEX check_results_agent_name_ts RENAME TO check_results_v1_agent_name_ts;
CREATE TABLE check_results (LIKE check_results_v1) PARTITION BY RANGE (ts);
CREATE INDEX check_results_agent_name_ts ON check_results (agent_id, name, ts);
ALTER TABLE service_events RENAME TO service_events_v1;
ALTER INDEX service_events_agent_ts RENAME TO service_events_v1_agent_ts;
CREATE TABLE service_events (LIKE service_events_v1) PARTITION BY RANGE (ts);
CREATE INDEX service_events_agent_ts ON service_events (agent_id, ts);
DO $$
DECLARE d date;
BEGIN
  FOR d IN SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date FROM check_results_v1 LOOP
    PERFORM vigie_ensure_partition('check_results', 'day', d);
  END LOOP;
  FOR d IN SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date FROM service_events_v1 LOOP
    PERFORM vigie_ensure_partition('service_events', 'day', d);
  END LOOP;
END $$;
INSERT INTO check_results SELECT * FROM check_results_v1;
INSERT INTO service_events SELECT * FROM service_events_v1;

-- Daily rows the status page reads; kept as long as rollups.
CREATE TABLE check_daily (
  agent_id         text NOT NULL,
  name             text NOT NULL,
  day              date NOT NULL,
  total            integer NOT NULL,
  ok               integer NOT NULL,
  warning          integer NOT NULL,
  critical         integer NOT NULL,
  latency_seconds  double precision NOT NULL,  -- sum over the day's results
  PRIMARY KEY (agent_id, name, day)
);
INSERT INTO check_daily
  SELECT agent_id, name, (ts AT TIME ZONE 'UTC')::date, count(*),
         count(*) FILTER (WHERE status = 'ok'), count(*) FILTER (WHERE status = 'warning'),
         count(*) FILTER (WHERE status = 'critical'), sum(latency_seconds)
  FROM check_results_v1 GROUP BY 1, 2, 3;
CREATE TABLE service_daily (
  agent_id  text NOT NULL,
  service   text NOT NULL,
  day       date NOT NULL,
  kind      text NOT NULL,
  events    integer NOT NULL,
  PRIMARY KEY (agent_id, service, day, kind)
);
INSERT INTO service_daily
  SELECT agent_id, service, (ts AT TIME ZONE 'UTC')::date, kind, count(*)
  FROM service_events_v1 GROUP BY 1, 2, 3, 4;
DROP TABLE check_results_v1;
DROP TABLE service_events_v1;
)sql"},
      {5, "remote write: a cursor per target and agent; blocks indexed by batch", R"sql(
-- Every batch of an agent with a sequence <= forwarded_seq has been accepted by the target.
CREATE TABLE remote_write_progress (
  target         text NOT NULL,
  agent_id       text NOT NULL REFERENCES agents (agent_id) ON DELETE CASCADE,
  forwarded_seq  bigint NOT NULL DEFAULT 0,
  updated_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (target, agent_id)
);
CREATE INDEX sample_blocks_agent_batch ON sample_blocks (agent_id, batch_seq);
)sql"},
      {6, "outbox leases: claimed, then delivered with no transaction open; order per alert",
       R"sql(
-- The alert a transition belongs to (rule/fingerprint): transitions of one alert go out in
-- order, other alerts do not wait for it.
ALTER TABLE notification_outbox ADD COLUMN alert text NOT NULL DEFAULT '';
ALTER TABLE notification_outbox ADD COLUMN leased_until timestamptz;
UPDATE notification_outbox
  SET alert = coalesce(request->'notification'->>'rule', '') || '/' ||
              coalesce(request->'notification'->>'fingerprint', '')
  WHERE delivered_at IS NULL;
CREATE INDEX notification_outbox_alert ON notification_outbox (alert, id)
  WHERE delivered_at IS NULL;
CREATE INDEX notification_outbox_delivered ON notification_outbox (delivered_at)
  WHERE delivered_at IS NOT NULL;
CREATE INDEX alert_events_at ON alert_events (at);
)sql"},
      {7, "control-plane replicas and their liveness, to mark agents of a dead one disconnected",
       R"sql(
CREATE TABLE controlplane_replicas (
  instance    text PRIMARY KEY,
  started_at  timestamptz NOT NULL DEFAULT now(),
  last_seen   timestamptz NOT NULL
);
)sql"},
      {8, "alert lifecycle: what was notified, acknowledgements, silences, the audit log",
       R"sql(
-- kind: 'absent' for agent-absent alerts (they hold back the other alerts of their agent).
-- notified: the last status handed to the outbox ('' = this firing is held back, never sent);
-- suppressed_by: why it is held ("silence <id>", "host down: <agent>"), or, for a notified
-- firing alert, the silence its last notification said it was under.
ALTER TABLE alerts ADD COLUMN kind text NOT NULL DEFAULT 'threshold';
ALTER TABLE alerts ADD COLUMN notified text NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN suppressed_by text NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN ack_comment text NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN acknowledged_at timestamptz;
ALTER TABLE alerts ADD COLUMN ack_expires_at timestamptz;
UPDATE alerts SET notified = state;
CREATE INDEX alerts_firing ON alerts (rule, fingerprint) WHERE state = 'firing';
ALTER TABLE alert_events ADD COLUMN by text NOT NULL DEFAULT '';
CREATE INDEX alert_events_alert ON alert_events (rule, fingerprint, id);

-- A one-off silence is active in [starts_at, ends_at); a recurring one in every
-- [starts_at + k * repeat_every, ends_at + k * repeat_every) that starts before repeat_until.
-- ended_at: when its last window ends (NULL: never), for the purge; expiring sets it to now.
CREATE TABLE silences (
  id            text PRIMARY KEY,
  matchers      jsonb NOT NULL,
  starts_at     timestamptz NOT NULL,
  ends_at       timestamptz NOT NULL,
  repeat_every  interval,
  repeat_until  timestamptz,
  created_by    text NOT NULL,
  comment       text NOT NULL DEFAULT '',
  created_at    timestamptz NOT NULL DEFAULT now(),
  ended_at      timestamptz
);

CREATE TABLE audit_log (
  id      bigserial PRIMARY KEY,
  at      timestamptz NOT NULL DEFAULT now(),
  actor   text NOT NULL,
  action  text NOT NULL,
  target  text NOT NULL DEFAULT '',
  detail  jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);
)sql"},
      {9, "pending alerts, so a restart resumes their `for`", R"sql(
CREATE TABLE rule_pending (
  rule         text NOT NULL,
  fingerprint  text NOT NULL,
  labels       jsonb NOT NULL,
  since        timestamptz NOT NULL,
  value        double precision NOT NULL,
  PRIMARY KEY (rule, fingerprint)
);
)sql"},
      {10, "flap hold: each alert's rule settings, to know when it has settled", R"sql(
ALTER TABLE alerts ADD COLUMN flap_threshold integer NOT NULL DEFAULT 0;
ALTER TABLE alerts ADD COLUMN flap_window_ms bigint NOT NULL DEFAULT 0;
CREATE INDEX alerts_flapping ON alerts (rule, fingerprint) WHERE suppressed_by = 'flapping';
)sql"},
      {11, "the current state of every check", R"sql(
CREATE TABLE check_state (
  agent_id              text NOT NULL REFERENCES agents (agent_id) ON DELETE CASCADE,
  name                  text NOT NULL,
  target                text NOT NULL,
  status                text NOT NULL,
  since                 timestamptz NOT NULL,
  message               text NOT NULL,
  latency_seconds       double precision NOT NULL,
  last_run              timestamptz NOT NULL,
  consecutive_failures  integer NOT NULL,
  labels                jsonb NOT NULL,
  PRIMARY KEY (agent_id, name)
);
CREATE INDEX check_state_status ON check_state (status);
INSERT INTO check_state
  SELECT DISTINCT ON (agent_id, name) agent_id, name, target, status, ts, message,
         latency_seconds, ts, 0, labels
  FROM check_results WHERE agent_id IN (SELECT agent_id FROM agents)
  ORDER BY agent_id, name, ts DESC;
)sql"},
      {12, "commands for agents (Admin RunCheck), routed to the replica holding the stream", R"sql(
CREATE TABLE commands (
  id          text PRIMARY KEY,
  agent_id    text NOT NULL REFERENCES agents (agent_id) ON DELETE CASCADE,
  check_name  text NOT NULL,
  state       text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'done')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  sent_at     timestamptz,
  done_at     timestamptz,
  result      jsonb
);
CREATE INDEX commands_pending ON commands (agent_id) WHERE state = 'pending';
CREATE INDEX commands_created ON commands (created_at);
)sql"},
      {13, "service events: the signal that ended a process", R"sql(
ALTER TABLE service_events ADD COLUMN signal integer NOT NULL DEFAULT 0;
)sql"},
      {14, "the current state of every supervised service", R"sql(
CREATE TABLE service_state (
  agent_id    text NOT NULL REFERENCES agents (agent_id) ON DELETE CASCADE,
  service     text NOT NULL,
  state       text NOT NULL,
  since       timestamptz NOT NULL,
  last_event  text NOT NULL,
  message     text NOT NULL,
  exit_code   integer NOT NULL DEFAULT 0,
  signal      integer NOT NULL DEFAULT 0,
  restarts    integer NOT NULL DEFAULT 0,
  updated     timestamptz NOT NULL,
  PRIMARY KEY (agent_id, service)
);
CREATE INDEX service_state_state ON service_state (state);
)sql"},
      {15, "commands for services (Admin RestartService) beside checks", R"sql(
ALTER TABLE commands RENAME COLUMN check_name TO name;
ALTER TABLE commands ADD COLUMN kind text NOT NULL DEFAULT 'run_check'
  CHECK (kind IN ('run_check', 'restart_service'));
)sql"},
  };
  return *migrations;
}

}  // namespace vigie::controlplane
