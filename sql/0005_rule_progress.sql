-- 0005: how far the flow has evaluated the trader rules, committed with the signals.
--
-- The live flow keeps no state of its own across restarts: klines continue from Redis, and
-- the rules continue from here. Each transaction that records signals (and rule failures)
-- also moves, for every (symbol, interval) it evaluated, the open time of the newest kline
-- whose decisions it holds. A flow that restarts (after a crash, with PostgreSQL away for a
-- while, with a lost data directory) evaluates again, from the klines stored in Redis,
-- every kline after that point; signals are idempotent, so a kline decided twice records
-- one signal. No signal is lost between a kline in Redis and its decision here.

CREATE TABLE rule_progress (
    symbol            text NOT NULL,
    interval          text NOT NULL,
    evaluated_open_ms bigint NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, interval)
);

GRANT SELECT, INSERT, UPDATE ON rule_progress TO klineflow_flow;

ALTER TABLE rule_progress ENABLE ROW LEVEL SECURITY;

CREATE POLICY rule_progress_flow_all ON rule_progress
    FOR ALL TO klineflow_flow
    USING (true)
    WITH CHECK (true);
