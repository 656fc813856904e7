-- 0003: backtest runs and their signals.
--
-- A backtest replays recorded trades through the live dataflow; each run is kept with what
-- makes it reproducible (input files and their SHA-256, the trader versions, the package
-- version, the parameters) and its timings. Its signals have the columns of `signals` plus
-- their forward returns and excursions, in a table of their own: they never NOTIFY, never
-- collide with the live rows of the same trader and kline, and go away with their run.
-- trader_id 0 marks a rule given on the command line rather than a stored trader.

CREATE TABLE backtest_runs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id        bigint REFERENCES users (id) ON DELETE SET NULL,
    status          text NOT NULL DEFAULT 'running'
                        CHECK (status IN ('running', 'done', 'failed')),
    inputs          jsonb NOT NULL,  -- [{"path": ..., "sha256": ...}, ...]
    traders         jsonb NOT NULL,  -- [{"id", "version", "name", "expression", "interval", ...}]
    params          jsonb NOT NULL DEFAULT '{}',  -- symbols, from/to, intervals
    package_version text NOT NULL,
    trades          bigint,
    klines          bigint,
    seconds         double precision,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);

CREATE TABLE backtest_signals (
    run_id         bigint NOT NULL REFERENCES backtest_runs (id) ON DELETE CASCADE,
    id             text NOT NULL,
    trader_id      bigint NOT NULL,
    trader_version integer NOT NULL,
    symbol         text NOT NULL,
    interval       text NOT NULL,
    kline_open_ms  bigint NOT NULL,
    kline_close_ms bigint NOT NULL,
    price          numeric(38, 8) NOT NULL,
    "values"       jsonb NOT NULL DEFAULT '{}',
    repeat_count   integer NOT NULL DEFAULT 1,
    outcomes       jsonb NOT NULL DEFAULT '{}',  -- {"ret1": .., "mfe1": .., "mae1": .., ...}
    PRIMARY KEY (run_id, id)
);

GRANT SELECT, INSERT, UPDATE ON backtest_runs, backtest_signals TO klineflow_flow;
GRANT SELECT ON backtest_runs, backtest_signals TO klineflow_dashboard;

ALTER TABLE backtest_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE backtest_signals ENABLE ROW LEVEL SECURITY;

CREATE POLICY backtest_runs_flow_all ON backtest_runs
    FOR ALL TO klineflow_flow USING (true) WITH CHECK (true);
CREATE POLICY backtest_signals_flow_all ON backtest_signals
    FOR ALL TO klineflow_flow USING (true) WITH CHECK (true);

-- the dashboard sees its user's runs, and runs made from the command line (no owner)
CREATE POLICY backtest_runs_dashboard_read ON backtest_runs
    FOR SELECT TO klineflow_dashboard
    USING (owner_id IS NULL OR owner_id = klineflow_current_user_id());
CREATE POLICY backtest_signals_dashboard_read ON backtest_signals
    FOR SELECT TO klineflow_dashboard
    USING (EXISTS (
        SELECT FROM backtest_runs r
        WHERE r.id = backtest_signals.run_id
          AND (r.owner_id IS NULL OR r.owner_id = klineflow_current_user_id())));
