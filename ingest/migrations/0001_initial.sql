-- citydash initial schema.  Applied by `python -m ingest migrate` as the
-- database owner; see docs/architecture.md and docs/data-protection.md.
CREATE EXTENSION IF NOT EXISTS timescaledb;

-- Least-privilege group roles.  Login users (or the roles themselves, on the
-- local stack) get these; see docs/configuration.md.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'citydash_ingest') THEN
    CREATE ROLE citydash_ingest LOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'citydash_reader') THEN
    CREATE ROLE citydash_reader LOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'citydash_public') THEN
    CREATE ROLE citydash_public LOGIN;
  END IF;
END
$$;

-- Sensor kinds as declared by the city pack: which metrics a kind may send.
CREATE TABLE sensor_kinds (
    kind        text PRIMARY KEY,
    domain      text NOT NULL CHECK (domain IN ('mobility', 'transport', 'infrastructure')),
    metrics     text[] NOT NULL DEFAULT '{}',  -- empty: any metric accepted
    units       jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE districts (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    geometry    jsonb NOT NULL,              -- GeoJSON, EPSG:4326
    area_km2    double precision,
    attributes  jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE sensors (
    id          serial PRIMARY KEY,
    external_id text NOT NULL UNIQUE,
    kind        text,
    domain      text CHECK (domain IN ('mobility', 'transport', 'infrastructure')),
    name        text,
    lon         double precision CHECK (lon BETWEEN -180 AND 180),
    lat         double precision CHECK (lat BETWEEN -90 AND 90),
    district_id text REFERENCES districts (id) ON DELETE SET NULL,
    attributes  jsonb NOT NULL DEFAULT '{}',
    placed      boolean GENERATED ALWAYS AS (lon IS NOT NULL AND lat IS NOT NULL) STORED,
    first_seen  timestamptz,
    last_seen   timestamptz,
    registered_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sensors_kind ON sensors (kind);
CREATE INDEX sensors_district ON sensors (district_id);

CREATE TABLE metrics (
    id          smallserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    unit        text
);

-- Raw readings.  One-day chunks: at city scale (1,500-5,000 sensors, a few
-- metrics each, one reading a minute) a day is 2-20 M rows, 0.2-2 GB with its
-- index, so the newest chunk and its index stay in memory on a 24 GiB machine
-- (TimescaleDB's advice: recent chunks within 25 % of RAM).
CREATE TABLE readings (
    time        timestamptz NOT NULL,
    sensor_id   integer NOT NULL,
    metric_id   smallint NOT NULL,
    value       double precision NOT NULL,
    flags       smallint NOT NULL DEFAULT 0   -- 1: receive time used (no time in payload)
);
SELECT create_hypertable('readings', 'time', chunk_time_interval => interval '1 day');
CREATE UNIQUE INDEX readings_key ON readings (sensor_id, metric_id, time);

CREATE TABLE vehicle_positions (
    time          timestamptz NOT NULL,
    vehicle       text NOT NULL,
    route         text,
    trip          text,
    lon           double precision NOT NULL,
    lat           double precision NOT NULL,
    speed_kmh     real,
    bearing       real,
    delay_s       real,
    occupancy_pct real
);
SELECT create_hypertable('vehicle_positions', 'time', chunk_time_interval => interval '1 day');
CREATE UNIQUE INDEX vehicle_positions_key ON vehicle_positions (vehicle, time);

CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    payload     bytea,                         -- capped, see CITYDASH_DEAD_LETTER_PAYLOAD_CAP
    payload_size integer NOT NULL,
    decoder     text,
    reason      text NOT NULL
);
CREATE INDEX dead_letters_received ON dead_letters (received_at);

CREATE TABLE alerts (
    id              bigserial PRIMARY KEY,
    kpi_id          text,
    scope_type      text NOT NULL DEFAULT 'city',
    scope_id        text NOT NULL DEFAULT '',
    kind            text NOT NULL CHECK (kind IN ('threshold', 'anomaly', 'health')),
    severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    state           text NOT NULL DEFAULT 'open'
                    CHECK (state IN ('open', 'acknowledged', 'resolved', 'closed')),
    value           double precision,
    threshold       double precision,
    details         jsonb NOT NULL DEFAULT '{}',
    opened_at       timestamptz NOT NULL DEFAULT now(),
    acknowledged_at timestamptz,
    acknowledged_by text,
    ack_comment     text,
    resolved_at     timestamptz,
    closed_at       timestamptz
);
-- One live alert per KPI, scope and kind (deduplication).
CREATE UNIQUE INDEX alerts_live ON alerts (coalesce(kpi_id, ''), scope_type, scope_id, kind)
    WHERE state IN ('open', 'acknowledged');
CREATE INDEX alerts_opened ON alerts (opened_at DESC);

-- Which optional TimescaleDB features this server offers (filled by the
-- migration runner from timescaledb.license).
CREATE TABLE timescale_features (
    name        text PRIMARY KEY,
    available   boolean NOT NULL,
    checked_at  timestamptz NOT NULL DEFAULT now()
);

CREATE VIEW readings_named AS
    SELECT r.time, s.external_id AS sensor_id, m.name AS metric, r.value
      FROM readings r
      JOIN sensors s ON s.id = r.sensor_id
      JOIN metrics m ON m.id = r.metric_id;

-- Views for the public app live in their own schema; citydash_public reads
-- nothing else.
CREATE SCHEMA public_view;

-- Privileges -------------------------------------------------------------
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO citydash_ingest, citydash_reader;
GRANT USAGE ON SCHEMA public_view TO citydash_public, citydash_reader;

GRANT SELECT ON ALL TABLES IN SCHEMA public TO citydash_reader;
GRANT SELECT, INSERT ON readings, vehicle_positions, dead_letters, metrics TO citydash_ingest;
GRANT SELECT, INSERT, UPDATE ON sensors, alerts TO citydash_ingest;
GRANT SELECT ON sensor_kinds, districts, timescale_features, readings_named TO citydash_ingest;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO citydash_ingest;
