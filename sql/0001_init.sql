-- 0001_init.sql: trader rules and the signals they raise.
--
-- Applied exactly once by `flows.storage.migrations.apply_migrations` (the migrate command),
-- inside a single transaction, and recorded with its checksum. Never edit this file once it
-- has been applied anywhere: add sql/0002_... instead.
--
-- Overview
--   users            people who own traders (the dashboard's accounts)
--   traders          a rule: an expression evaluated on closed klines of one interval
--   trader_versions  the history of each trader's (expression, interval); signals name the
--                    version that raised them, so an edited rule never rewrites the past
--   signals          one row per (trader, symbol, interval, kline); the flow computes the id
--                    deterministically, so re-delivery after a restart is a no-op
--
-- Change notification: triggers send NOTIFY with a small payload (a row id) on channel
-- `signals` (new signal rows) and `traders` (any change to a trader); listeners read the row.
--
-- Access: two NOLOGIN roles, granted to the login roles of the processes that need them
-- (`GRANT klineflow_flow TO some_login`), which then `SET ROLE`:
--   klineflow_flow       the dataflow: reads every trader, writes signals, never sees users
--   klineflow_dashboard  the web app: acts for one user at a time, named per transaction by
--                        `SELECT set_config('klineflow.user_id', '<id>', true)`; row-level
--                        security limits it to that user's traders and signals
-- RLS is enabled but not forced: the tables' owner (the migrating role) sees everything.


-- ---------------------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------------------

CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    password_hash text,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE traders (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id        bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name            text NOT NULL,
    description     text NOT NULL DEFAULT '',
    expression      text NOT NULL,
    -- Binance's kline intervals, spelled as Binance spells them ('1M' is a month, '1m' a minute)
    interval        text NOT NULL CHECK (interval IN (
                        '1s', '1m', '3m', '5m', '15m', '30m', '1h', '2h', '4h', '6h', '8h',
                        '12h', '1d', '3d', '1w', '1M')),
    -- which symbols the rule watches: every symbol, an explicit list, or a regular expression
    symbols_mode    text NOT NULL DEFAULT 'all'
                        CHECK (symbols_mode IN ('all', 'list', 'pattern')),
    symbols         text[] NOT NULL DEFAULT '{}',
    symbols_pattern text,
    -- every_close: a signal on every closed kline where the rule holds;
    -- on_change:   only when it starts to hold (false -> true)
    trigger_mode    text NOT NULL DEFAULT 'on_change'
                        CHECK (trigger_mode IN ('every_close', 'on_change')),
    -- bars to stay quiet after a signal for the same symbol
    cooldown_bars   integer NOT NULL DEFAULT 50 CHECK (cooldown_bars >= 0),
    enabled         boolean NOT NULL DEFAULT true,
    -- maintained by trader_versions_track(): 1 on insert, +1 per change of expression/interval
    version         integer NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner_id, name),
    -- the mode must come with what it needs
    CONSTRAINT traders_symbols_list_given
        CHECK (symbols_mode <> 'list' OR cardinality(symbols) > 0),
    CONSTRAINT traders_symbols_pattern_given
        CHECK (symbols_mode <> 'pattern' OR symbols_pattern IS NOT NULL)
);

CREATE TABLE trader_versions (
    trader_id  bigint NOT NULL REFERENCES traders (id) ON DELETE CASCADE,
    version    integer NOT NULL,
    expression text NOT NULL,
    interval   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trader_id, version)
);

CREATE TABLE signals (
    -- deterministic id computed by the flow from (trader, symbol, interval, kline open time):
    -- the same signal delivered twice has the same id
    id             text PRIMARY KEY,
    trader_id      bigint NOT NULL REFERENCES traders (id) ON DELETE CASCADE,
    trader_version integer NOT NULL,
    symbol         text NOT NULL,
    interval       text NOT NULL,
    kline_open_ms  bigint NOT NULL,
    kline_close_ms bigint NOT NULL,
    price          numeric(38, 8) NOT NULL,
    -- the indicator values the rule saw; "values" is a reserved word, so always quote it
    "values"       jsonb NOT NULL DEFAULT '{}',
    repeat_count   integer NOT NULL DEFAULT 1,
    status         text NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'seen', 'dismissed')),
    -- kline close to row written, as measured by the flow
    latency_ms     double precision,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_repeat_at timestamptz,
    -- the idempotency key: one signal per trader and kline, whatever id a buggy writer sends;
    -- writers use INSERT ... ON CONFLICT DO NOTHING
    CONSTRAINT signals_one_per_kline UNIQUE (trader_id, symbol, interval, kline_open_ms),
    -- a signal names a version that exists
    CONSTRAINT signals_trader_version_fkey FOREIGN KEY (trader_id, trader_version)
        REFERENCES trader_versions (trader_id, version) ON DELETE CASCADE
);

-- the dashboard's feed (newest first) and a trader's history on one symbol
CREATE INDEX signals_created_at_idx ON signals (created_at DESC);
CREATE INDEX signals_trader_symbol_open_idx ON signals (trader_id, symbol, kline_open_ms DESC);


-- ---------------------------------------------------------------------------------------
-- Trader versions
-- ---------------------------------------------------------------------------------------

-- BEFORE: decide the version. Callers cannot set it themselves: an insert starts at 1, an
-- update bumps it only when the expression or the interval changes. Also keeps updated_at.
CREATE FUNCTION traders_set_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.version := 1;
    ELSE
        IF (NEW.expression, NEW.interval) IS DISTINCT FROM (OLD.expression, OLD.interval) THEN
            NEW.version := OLD.version + 1;
        ELSE
            NEW.version := OLD.version;
        END IF;
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER traders_set_version
    BEFORE INSERT OR UPDATE ON traders
    FOR EACH ROW EXECUTE FUNCTION traders_set_version();

-- AFTER (the trader row exists, so the foreign key holds): record the new version.
-- SECURITY DEFINER because the dashboard edits traders but has no right to write
-- trader_versions itself; the search path is pinned to the schema migrated into.
CREATE FUNCTION traders_record_version() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.version <> OLD.version THEN
        INSERT INTO trader_versions (trader_id, version, expression, interval)
        VALUES (NEW.id, NEW.version, NEW.expression, NEW.interval);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER traders_record_version
    AFTER INSERT OR UPDATE ON traders
    FOR EACH ROW EXECUTE FUNCTION traders_record_version();


-- ---------------------------------------------------------------------------------------
-- Notifications (delivered at commit; payload = the row id as text)
-- ---------------------------------------------------------------------------------------

-- AFTER INSERT ... FOR EACH ROW fires only for rows actually inserted, so an
-- INSERT ... ON CONFLICT DO NOTHING that hits an existing signal sends nothing.
CREATE FUNCTION signals_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('signals', NEW.id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER signals_notify
    AFTER INSERT ON signals
    FOR EACH ROW EXECUTE FUNCTION signals_notify();

-- Any change to a trader (the flow reloads its rules; the dashboard refreshes).
CREATE FUNCTION traders_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('traders', OLD.id::text);
    ELSE
        PERFORM pg_notify('traders', NEW.id::text);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER traders_notify
    AFTER INSERT OR UPDATE OR DELETE ON traders
    FOR EACH ROW EXECUTE FUNCTION traders_notify();


-- ---------------------------------------------------------------------------------------
-- Roles and privileges
-- ---------------------------------------------------------------------------------------

-- Roles belong to the whole cluster, not to this database: another database on the same
-- server (another deployment, a test database) may have created them already, possibly at
-- the same moment, hence the existence check and the tolerated duplicate errors.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['klineflow_flow', 'klineflow_dashboard'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created concurrently by someone else: fine
            END;
        END IF;
    END LOOP;
END;
$$;

-- Both roles need to reach the schema the tables were created in.
DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO klineflow_flow, klineflow_dashboard',
                   current_schema());
END;
$$;

-- The flow: reads every trader and version, writes signals (insert; update for repeats).
-- Nothing at all on users.
GRANT SELECT ON traders, trader_versions TO klineflow_flow;
GRANT SELECT, INSERT, UPDATE ON signals TO klineflow_flow;

-- The dashboard: user names (never password hashes), its user's traders, and the status of
-- its user's signals.
GRANT SELECT (id, name) ON users TO klineflow_dashboard;
GRANT SELECT, INSERT, UPDATE, DELETE ON traders TO klineflow_dashboard;
GRANT SELECT ON signals TO klineflow_dashboard;
GRANT UPDATE (status) ON signals TO klineflow_dashboard;


-- ---------------------------------------------------------------------------------------
-- Row-level security
-- ---------------------------------------------------------------------------------------

-- The dashboard's current user, or NULL when none is set. current_setting(.., true) gives
-- NULL if the setting was never defined but '' once a SET LOCAL of it has ended, hence the
-- nullif; NULL matches no owner, so a forgotten set_config shows nothing rather than all.
CREATE FUNCTION klineflow_current_user_id() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('klineflow.user_id', true), '')::bigint
$$;

ALTER TABLE traders ENABLE ROW LEVEL SECURITY;
ALTER TABLE signals ENABLE ROW LEVEL SECURITY;

-- traders: the flow sees them all (read only by privilege); the dashboard sees and changes
-- only its user's, and cannot give a trader to somebody else (WITH CHECK).
CREATE POLICY traders_flow_read ON traders
    FOR SELECT TO klineflow_flow
    USING (true);

CREATE POLICY traders_dashboard_own ON traders
    FOR ALL TO klineflow_dashboard
    USING (owner_id = klineflow_current_user_id())
    WITH CHECK (owner_id = klineflow_current_user_id());

-- signals: the flow reads and writes any (its privileges stop at SELECT/INSERT/UPDATE); the
-- dashboard reaches a signal through its trader's owner. The subquery on traders is itself
-- filtered by the traders policy above, which says the same thing.
CREATE POLICY signals_flow_all ON signals
    FOR ALL TO klineflow_flow
    USING (true)
    WITH CHECK (true);

CREATE POLICY signals_dashboard_read ON signals
    FOR SELECT TO klineflow_dashboard
    USING (EXISTS (
        SELECT FROM traders t
        WHERE t.id = signals.trader_id AND t.owner_id = klineflow_current_user_id()));

CREATE POLICY signals_dashboard_status ON signals
    FOR UPDATE TO klineflow_dashboard
    USING (EXISTS (
        SELECT FROM traders t
        WHERE t.id = signals.trader_id AND t.owner_id = klineflow_current_user_id()));
