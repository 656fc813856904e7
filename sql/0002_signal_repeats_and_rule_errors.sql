-- 0002: what the running flow needs beyond 0001 to write signals.
--
-- 1. Idempotent repeats. A rule that fires again for the same trader and symbol within the
--    trader's cooldown bumps the repeat count of the earlier signal instead of adding a row.
--    Replaying the same klines must not bump it twice, so the row remembers the open time of
--    the last kline that counted as a repeat, and the flow only bumps when its kline is newer:
--        UPDATE signals SET repeat_count = repeat_count + 1, last_repeat_open_ms = $open ...
--        WHERE id = $id AND coalesce(last_repeat_open_ms, kline_open_ms) < $open
-- 2. Rule errors. A trader whose evaluation raises on a symbol is switched off for that
--    symbol only; the flow records why here (one row per trader version and symbol), for the
--    command line and the dashboard's status page.
-- 3. klineflow_record_signal(): the one way the flow records that a rule fired (below).
-- 4. A local owner. Traders made from the command line without --owner belong to the user
--    named 'local'.

ALTER TABLE signals ADD COLUMN last_repeat_open_ms bigint;

CREATE TABLE trader_errors (
    trader_id      bigint NOT NULL REFERENCES traders (id) ON DELETE CASCADE,
    trader_version integer NOT NULL,
    symbol         text NOT NULL,
    error          text NOT NULL,
    kline_open_ms  bigint NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trader_id, trader_version, symbol)
);

GRANT SELECT, INSERT, UPDATE ON trader_errors TO klineflow_flow;
GRANT SELECT ON trader_errors TO klineflow_dashboard;

ALTER TABLE trader_errors ENABLE ROW LEVEL SECURITY;

CREATE POLICY trader_errors_flow_all ON trader_errors
    FOR ALL TO klineflow_flow
    USING (true)
    WITH CHECK (true);

CREATE POLICY trader_errors_dashboard_read ON trader_errors
    FOR SELECT TO klineflow_dashboard
    USING (EXISTS (
        SELECT FROM traders t
        WHERE t.id = trader_errors.trader_id AND t.owner_id = klineflow_current_user_id()));

-- A rule fired for (trader, symbol, interval) at the kline opening at p_open_ms. If a signal
-- of that trader and symbol opened in [p_window_start_ms, p_open_ms] (the trader's cooldown),
-- this is a repeat of the newest such signal: its repeat count goes up, once per kline, however
-- often the same kline is delivered. Otherwise it is a new signal, inserted with ON CONFLICT
-- DO NOTHING so a re-delivered one changes nothing (and, the NOTIFY trigger being AFTER
-- INSERT, announces nothing). Returns 'new', 'repeat' or 'duplicate'.
CREATE FUNCTION klineflow_record_signal(
    p_id text,
    p_trader_id bigint,
    p_trader_version integer,
    p_symbol text,
    p_interval text,
    p_open_ms bigint,
    p_close_ms bigint,
    p_window_start_ms bigint,
    p_price numeric,
    p_values jsonb,
    p_latency_ms double precision
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    anchor_id text;
    anchor_open bigint;
BEGIN
    SELECT id, kline_open_ms INTO anchor_id, anchor_open
    FROM signals
    WHERE trader_id = p_trader_id AND symbol = p_symbol AND interval = p_interval
      AND kline_open_ms BETWEEN p_window_start_ms AND p_open_ms
    ORDER BY kline_open_ms DESC
    LIMIT 1;
    IF FOUND THEN
        IF anchor_open = p_open_ms THEN
            RETURN 'duplicate';
        END IF;
        UPDATE signals
        SET repeat_count = repeat_count + 1,
            last_repeat_open_ms = p_open_ms,
            last_repeat_at = now()
        WHERE id = anchor_id AND coalesce(last_repeat_open_ms, kline_open_ms) < p_open_ms;
        RETURN CASE WHEN FOUND THEN 'repeat' ELSE 'duplicate' END;
    END IF;
    INSERT INTO signals (id, trader_id, trader_version, symbol, interval, kline_open_ms,
                         kline_close_ms, price, "values", latency_ms)
    VALUES (p_id, p_trader_id, p_trader_version, p_symbol, p_interval, p_open_ms,
            p_close_ms, p_price, p_values, p_latency_ms)
    ON CONFLICT DO NOTHING;
    RETURN CASE WHEN FOUND THEN 'new' ELSE 'duplicate' END;
END;
$$;

INSERT INTO users (name) VALUES ('local') ON CONFLICT (name) DO NOTHING;
