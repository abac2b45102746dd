-- Sign-in, audit log and the public app's views.  See docs/auth.md,
-- docs/data-protection.md and docs/public-embed.md.

-- Dashboard users (built-in sign-in).  Managed by the owner role through
-- `python -m dashboard users ...`; the dashboard's role citydash_reader never
-- reads this table: it calls auth_lookup() and auth_touch() below.
CREATE TABLE users (
    name          text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9._@-]{1,64}$'),
    role          text NOT NULL CHECK (role IN ('viewer', 'planner', 'operator', 'admin')),
    password_hash text NOT NULL,
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz
);

-- Who did what, when: sign-ins (and failed attempts), acknowledgements,
-- exports.  Append-only for the dashboard (INSERT only, no UPDATE/DELETE).
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    role        text,
    action      text NOT NULL CHECK (action ~ '^[a-z][a-z0-9_.]{0,63}$'),
    detail      jsonb NOT NULL DEFAULT '{}',
    remote_addr text
);
CREATE INDEX audit_log_at ON audit_log (at);

-- The password hash and role of an enabled user, for the sign-in check.
CREATE FUNCTION auth_lookup(p_name text)
RETURNS TABLE (name text, role text, password_hash text)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT u.name, u.role, u.password_hash FROM users u
     WHERE u.name = p_name AND NOT u.disabled
$$;

-- Role of an enabled user (NULL when unknown or disabled): sessions are
-- checked against it, so a disabled user or a changed role takes effect.
CREATE FUNCTION auth_role(p_name text)
RETURNS text
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT u.role FROM users u WHERE u.name = p_name AND NOT u.disabled
$$;

CREATE FUNCTION auth_touch(p_name text)
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    UPDATE users SET last_login_at = now() WHERE name = p_name
$$;

-- Audit entries older than p_days are deleted (retention, run by the owner
-- or the ingest jobs; see docs/data-protection.md).
CREATE FUNCTION purge_audit_log(p_days integer)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    IF p_days IS NULL OR p_days < 1 THEN
        RAISE EXCEPTION 'purge_audit_log: keep at least one day' USING ERRCODE = '22023';
    END IF;
    DELETE FROM audit_log WHERE at < now() - make_interval(days => p_days);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Which KPIs the public may see, with their minimum group size and the
-- publication delay.  The catalogue (YAML) decides; the dashboard writes it
-- at start-up through publish_kpis(), so the views below need no YAML.
CREATE TABLE published_kpis (
    kpi_id      text PRIMARY KEY,
    min_group   integer NOT NULL CHECK (min_group >= 1),
    delay       interval NOT NULL DEFAULT '0' CHECK (delay >= interval '0'),
    unit        text NOT NULL DEFAULT '',
    better      text NOT NULL DEFAULT 'lower' CHECK (better IN ('higher', 'lower')),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Replace the published set: p_kpis is a JSON array of
-- {"kpi_id", "min_group", "unit", "better"}; p_delay_s applies to all.
CREATE FUNCTION publish_kpis(p_kpis jsonb, p_delay_s integer)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    IF jsonb_typeof(p_kpis) <> 'array' THEN
        RAISE EXCEPTION 'publish_kpis: expected a JSON array' USING ERRCODE = '22023';
    END IF;
    IF p_delay_s IS NULL OR p_delay_s < 0 THEN
        RAISE EXCEPTION 'publish_kpis: delay must be >= 0' USING ERRCODE = '22023';
    END IF;
    DELETE FROM published_kpis
     WHERE kpi_id NOT IN (SELECT e->>'kpi_id' FROM jsonb_array_elements(p_kpis) e);
    INSERT INTO published_kpis (kpi_id, min_group, delay, unit, better, updated_at)
    SELECT e->>'kpi_id', greatest(1, (e->>'min_group')::integer),
           make_interval(secs => p_delay_s), coalesce(e->>'unit', ''),
           coalesce(e->>'better', 'lower'), now()
      FROM jsonb_array_elements(p_kpis) e
    ON CONFLICT (kpi_id) DO UPDATE
       SET min_group = EXCLUDED.min_group, delay = EXCLUDED.delay, unit = EXCLUDED.unit,
           better = EXCLUDED.better, updated_at = now()
     WHERE (published_kpis.min_group, published_kpis.delay, published_kpis.unit,
            published_kpis.better)
           IS DISTINCT FROM (EXCLUDED.min_group, EXCLUDED.delay, EXCLUDED.unit, EXCLUDED.better);
    SELECT count(*) INTO n FROM published_kpis;
    RETURN n;
END
$$;

-- Public views: published KPIs only, city and district scopes only (no
-- sensor, road, route or vehicle rows), values of groups smaller than the
-- KPI's min_group suppressed (NULL), nothing newer than the delay.  The
-- views run with their owner's rights, so citydash_public needs no grant on
-- the tables behind them.
CREATE VIEW public_view.kpis AS
    SELECT kpi_id, min_group, unit, better, extract(epoch FROM delay)::integer AS delay_s
      FROM published_kpis;

CREATE VIEW public_view.kpi_series AS
    SELECT k.resolution, k.bucket, k.kpi_id, k.scope_type, k.scope_id,
           CASE WHEN k.sensors >= p.min_group THEN k.value END AS value,
           (k.sensors < p.min_group) AS suppressed
      FROM (SELECT '1m'::text AS resolution, bucket + interval '1 minute' AS bucket_end, *
              FROM kpi_1m
            UNION ALL
            SELECT '1h'::text, bucket + interval '1 hour', * FROM kpi_1h) k
      JOIN published_kpis p ON p.kpi_id = k.kpi_id
     WHERE k.scope_type IN ('city', 'district')
       AND k.bucket_end <= now() - p.delay;

CREATE VIEW public_view.districts AS
    SELECT id, name FROM districts;

-- Privileges -------------------------------------------------------------
REVOKE ALL ON users, audit_log, published_kpis FROM citydash_reader, citydash_ingest, citydash_public;
REVOKE ALL ON FUNCTION auth_lookup(text), auth_role(text), auth_touch(text),
              purge_audit_log(integer), publish_kpis(jsonb, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_lookup(text), auth_role(text), auth_touch(text),
                          publish_kpis(jsonb, integer) TO citydash_reader;
GRANT EXECUTE ON FUNCTION purge_audit_log(integer) TO citydash_ingest;
GRANT INSERT ON audit_log TO citydash_reader;
GRANT USAGE ON SEQUENCE audit_log_id_seq TO citydash_reader;
GRANT SELECT ON published_kpis TO citydash_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public_view TO citydash_public, citydash_reader;
