-- 0009: every SECURITY DEFINER function of this schema searches pg_temp last.
--
-- A function created with `SET search_path FROM CURRENT` pins the path of the migration's
-- session ("$user", public), which does not name pg_temp; PostgreSQL then searches the
-- caller's temporary schema FIRST for tables. Inside a definer function (which runs with the
-- owner's rights) a caller's temporary table could stand in for ours: 0006 fixed that for
-- its functions and traders_record_version (0001); traders_enforce_quota (0008) counted the
-- rows of a caller's temporary klineflow_limits or traders, so a dashboard login with any
-- user's session could enable traders past the quota.
--
-- Here every definer function of the schema migrated into gets pg_catalog first (nothing
-- shadows a built-in), then this schema, then pg_temp, whatever it had; later migrations
-- should write the same (see 0006).

DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.prosecdef AND p.pronamespace = current_schema()::regnamespace
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, %I, pg_temp',
                       f, current_schema());
    END LOOP;
END;
$$;
