-- Optional continuous aggregates, only where the TimescaleDB licence offers
-- them (the Timescale Licence, not the Apache edition built for citydash).
-- They have the same columns as readings_1m / readings_1h; ingest.rollup
-- reads through them when present and then leaves the 1-minute and 1-hour
-- maintenance to TimescaleDB's refresh policies.  On the Apache edition this
-- migration does nothing, and citydash's own rollup job does the work.
-- This path cannot be exercised on the Apache edition (see docs/kpis.md).
DO $$
BEGIN
    IF coalesce(current_setting('timescaledb.license', true), '') <> 'timescale' THEN
        RETURN;
    END IF;
    EXECUTE $q$
        CREATE MATERIALIZED VIEW readings_1m_cagg
        WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
        SELECT time_bucket('1 minute', time) AS bucket, sensor_id, metric_id,
               count(*)::integer AS count, sum(value) AS sum, min(value) AS min,
               max(value) AS max, last(value, time) AS last, max(time) AS last_time
          FROM readings GROUP BY 1, 2, 3 WITH NO DATA $q$;
    EXECUTE $q$
        CREATE MATERIALIZED VIEW readings_1h_cagg
        WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
        SELECT time_bucket('1 hour', bucket) AS bucket, sensor_id, metric_id,
               sum(count)::integer AS count, sum(sum) AS sum, min(min) AS min,
               max(max) AS max, last(last, last_time) AS last, max(last_time) AS last_time
          FROM readings_1m_cagg GROUP BY 1, 2, 3 WITH NO DATA $q$;
    PERFORM add_continuous_aggregate_policy('readings_1m_cagg', start_offset => interval '7 days',
        end_offset => interval '1 minute', schedule_interval => interval '1 minute');
    PERFORM add_continuous_aggregate_policy('readings_1h_cagg', start_offset => interval '7 days',
        end_offset => interval '1 hour', schedule_interval => interval '5 minutes');
    GRANT SELECT ON readings_1m_cagg, readings_1h_cagg TO citydash_reader, citydash_ingest;
END
$$;
