-- KPI engine: rollups, materialised KPI series, alert bookkeeping.
-- See docs/kpis.md ("Rollups") and ingest/rollup.py.  Works on the Apache
-- edition of TimescaleDB: no continuous aggregates, compression or policies.

-- Per sensor and metric, one row per 1-minute / 1-hour bucket.  ``last`` is
-- the value at ``last_time``, the newest reading in the bucket.  Readings are
-- never updated or deleted (ON CONFLICT DO NOTHING), so recomputing a bucket
-- from its source is idempotent.
CREATE TABLE readings_1m (
    bucket    timestamptz NOT NULL,
    sensor_id integer NOT NULL,
    metric_id smallint NOT NULL,
    count     integer NOT NULL,
    sum       double precision NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    last      double precision NOT NULL,
    last_time timestamptz NOT NULL
);
-- At one reading a minute the 1-minute rollup has as many rows as the raw
-- table, hence the same one-day chunks.
SELECT create_hypertable('readings_1m', 'bucket', chunk_time_interval => interval '1 day');
CREATE UNIQUE INDEX readings_1m_key ON readings_1m (sensor_id, metric_id, bucket);

CREATE TABLE readings_1h (LIKE readings_1m INCLUDING DEFAULTS);
SELECT create_hypertable('readings_1h', 'bucket', chunk_time_interval => interval '30 days');
CREATE UNIQUE INDEX readings_1h_key ON readings_1h (sensor_id, metric_id, bucket);

-- 1-minute buckets touched by the ingestor since the last rollup run.  Append
-- only and without a unique index, so writers never wait on each other or on
-- the rollup job; the job deletes what it claims, in the transaction that
-- recomputes those buckets.
CREATE TABLE rollup_pending (
    bucket timestamptz NOT NULL
);

-- Book-keeping of the jobs (last run, counts): one row per job name.
CREATE TABLE rollup_state (
    name       text PRIMARY KEY,
    at         timestamptz,
    details    jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Materialised KPI values per bucket and scope (city: scope_id '').  Computed
-- by the rollup job from readings_1m / readings_1h (and vehicle_positions,
-- dead_letters) with the same code the dashboard uses to compute them live.
CREATE TABLE kpi_1m (
    bucket     timestamptz NOT NULL,
    kpi_id     text NOT NULL,
    scope_type text NOT NULL,
    scope_id   text NOT NULL,
    value      double precision,
    sensors    integer NOT NULL,
    expected   integer NOT NULL
);
SELECT create_hypertable('kpi_1m', 'bucket', chunk_time_interval => interval '7 days');
CREATE UNIQUE INDEX kpi_1m_key ON kpi_1m (kpi_id, scope_type, scope_id, bucket);

CREATE TABLE kpi_1h (LIKE kpi_1m INCLUDING DEFAULTS);
SELECT create_hypertable('kpi_1h', 'bucket', chunk_time_interval => interval '90 days');
CREATE UNIQUE INDEX kpi_1h_key ON kpi_1h (kpi_id, scope_type, scope_id, bucket);

-- Which definition of each KPI the materialised values belong to, and from
-- when they are complete.  A KPI whose hash differs from the catalogue's is
-- computed live until the job has rebuilt it.
CREATE TABLE kpi_state (
    kpi_id      text PRIMARY KEY,
    definition  text NOT NULL,
    m1_from     timestamptz,
    h1_from     timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Alert state machines (hysteresis, minimum duration) between job runs.
CREATE TABLE alert_trackers (
    key        text PRIMARY KEY,
    state      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every change of an alert bumps ``version``; the job publishes rows whose
-- version is ahead of ``published_version`` on MQTT (also changes made by
-- acknowledge_alert() from the dashboard).
ALTER TABLE alerts ADD COLUMN version integer NOT NULL DEFAULT 1;
ALTER TABLE alerts ADD COLUMN published_version integer NOT NULL DEFAULT 0;
CREATE INDEX alerts_unpublished ON alerts (id) WHERE version > published_version;

-- Acknowledging is the one write the dashboard (citydash_reader) may do.
CREATE FUNCTION acknowledge_alert(p_id bigint, p_who text, p_comment text DEFAULT NULL)
RETURNS alerts
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    found alerts;
BEGIN
    IF p_who IS NULL OR length(trim(p_who)) = 0 THEN
        RAISE EXCEPTION 'acknowledge_alert: who must not be empty' USING ERRCODE = '22023';
    END IF;
    UPDATE alerts
       SET state = 'acknowledged', acknowledged_at = now(),
           acknowledged_by = left(trim(p_who), 200), ack_comment = left(p_comment, 2000),
           version = version + 1
     WHERE id = p_id AND state = 'open'
    RETURNING * INTO found;
    IF found.id IS NULL THEN
        SELECT * INTO found FROM alerts WHERE id = p_id;
        IF found.id IS NULL THEN
            RAISE EXCEPTION 'acknowledge_alert: no alert %', p_id USING ERRCODE = 'P0002';
        END IF;
        RAISE EXCEPTION 'acknowledge_alert: alert % is %, only open alerts can be acknowledged',
              p_id, found.state USING ERRCODE = '55000';
    END IF;
    RETURN found;
END
$$;

-- Retention for the ingest role, which owns nothing and so cannot call
-- drop_chunks itself.  Raw tables keep p_raw_days, 1-minute tables
-- p_1m_days (never less than p_raw_days, so hours can always be recomputed
-- from minutes); 1-hour tables are kept.
CREATE FUNCTION apply_retention(p_raw_days integer, p_1m_days integer)
RETURNS TABLE (relation text, dropped integer)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    m1_days integer := greatest(p_1m_days, p_raw_days);
BEGIN
    IF p_raw_days IS NULL OR p_raw_days < 1 OR p_1m_days IS NULL OR p_1m_days < 1 THEN
        RAISE EXCEPTION 'apply_retention: retention must be at least one day' USING ERRCODE = '22023';
    END IF;
    relation := 'readings';
    SELECT count(*) INTO dropped FROM drop_chunks('readings', now() - make_interval(days => p_raw_days));
    RETURN NEXT;
    relation := 'vehicle_positions';
    SELECT count(*) INTO dropped FROM drop_chunks('vehicle_positions', now() - make_interval(days => p_raw_days));
    RETURN NEXT;
    relation := 'readings_1m';
    SELECT count(*) INTO dropped FROM drop_chunks('readings_1m', now() - make_interval(days => m1_days));
    RETURN NEXT;
    relation := 'kpi_1m';
    SELECT count(*) INTO dropped FROM drop_chunks('kpi_1m', now() - make_interval(days => m1_days));
    RETURN NEXT;
END
$$;

-- Privileges -------------------------------------------------------------
REVOKE ALL ON FUNCTION acknowledge_alert(bigint, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION apply_retention(integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION acknowledge_alert(bigint, text, text) TO citydash_reader, citydash_ingest;
GRANT EXECUTE ON FUNCTION apply_retention(integer, integer) TO citydash_ingest;

GRANT SELECT ON readings_1m, readings_1h, rollup_pending, rollup_state, kpi_1m, kpi_1h,
                kpi_state, alert_trackers TO citydash_reader;
GRANT SELECT, INSERT, UPDATE ON readings_1m, readings_1h, rollup_state TO citydash_ingest;
GRANT SELECT, INSERT, DELETE ON rollup_pending TO citydash_ingest;
GRANT SELECT, INSERT, UPDATE, DELETE ON kpi_1m, kpi_1h, kpi_state, alert_trackers TO citydash_ingest;
