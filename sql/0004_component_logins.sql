-- 0004: what each component's login needs beyond 0001-0003, and nothing more.
--
-- Components log in with roles of their own (made by `klineflow access pg-login`), each a
-- member of its component's group roles:
--   flow       klineflow_flow (0001): traders read, signals and rule errors written,
--              backtest runs recorded (0003)
--   dashboard  klineflow_dashboard (0001): a user's traders and signals, under row-level
--              security, inside `SET LOCAL ROLE` transactions; and klineflow_dashboard_app
--              (below): what the dashboard process does for itself, outside any user's
--              transaction
--   api        nothing: it reads klines from Redis only
--
-- 1. klineflow_dashboard_app. Signing in reads users.password_hash (and rehashes it),
--    single sign-on makes an account on first use, and a backtest started from the
--    dashboard records its run and signals. Until now only the owner could do these, so the
--    dashboard had to log in as the owner. The role gets exactly those columns and tables;
--    klineflow_dashboard (what a user's transaction becomes) still never sees a hash.
-- 2. schema_migrations is readable by both components, so a component's login can tell
--    that the schema is current without any right to change it (migrations stay the
--    owner's).

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'klineflow_dashboard_app') THEN
        BEGIN
            CREATE ROLE klineflow_dashboard_app NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created concurrently by another database of the same server: fine
        END;
    END IF;
END;
$$;

DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO klineflow_dashboard_app', current_schema());
END;
$$;

-- accounts: sign-in (read and rehash), single sign-on (an account made on first use), and
-- `klineflow users` run with the dashboard's login
GRANT SELECT (id, name, password_hash, created_at) ON users TO klineflow_dashboard_app;
GRANT INSERT (name, password_hash), UPDATE (name, password_hash) ON users
    TO klineflow_dashboard_app;

-- backtests started from the dashboard: the run (with its owner) and its signals
GRANT SELECT, INSERT, UPDATE ON backtest_runs TO klineflow_dashboard_app;
GRANT SELECT, INSERT ON backtest_signals TO klineflow_dashboard_app;

CREATE POLICY backtest_runs_dashboard_app ON backtest_runs
    FOR ALL TO klineflow_dashboard_app USING (true) WITH CHECK (true);
CREATE POLICY backtest_signals_dashboard_app ON backtest_signals
    FOR ALL TO klineflow_dashboard_app USING (true) WITH CHECK (true);

-- is the schema current? (readable, never writable, by the components)
GRANT SELECT ON schema_migrations TO klineflow_flow, klineflow_dashboard_app;
