-- Dead letters are kept CITYDASH_DEAD_LETTER_RETENTION_DAYS: a rejected
-- payload may hold anything a device sent, so it is not kept for ever.  The
-- ingestor's retention job calls this (it may insert dead letters, never
-- delete them directly; see docs/data-protection.md).
CREATE FUNCTION purge_dead_letters(p_days integer)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    IF p_days IS NULL OR p_days < 1 THEN
        RAISE EXCEPTION 'purge_dead_letters: keep at least one day' USING ERRCODE = '22023';
    END IF;
    DELETE FROM dead_letters WHERE received_at < now() - make_interval(days => p_days);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

REVOKE ALL ON FUNCTION purge_dead_letters(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION purge_dead_letters(integer) TO citydash_ingest;
