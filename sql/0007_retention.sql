-- 0007: retention. The running flow deletes signals and trader errors older than their
-- configured ages (flows/storage/retention.py; KLINEFLOW_SIGNALS_RETENTION_DAYS and
-- KLINEFLOW_TRADER_ERRORS_RETENTION_DAYS), in small batches so no delete holds a lock for
-- long. Until now nothing bounded these tables: at a high signal rate PostgreSQL grew
-- without end.
--
-- The flow may delete, never more: its policies (0001, 0002) already cover every row, and
-- the dashboard keeps no right to delete either table.

GRANT DELETE ON signals, trader_errors TO klineflow_flow;

-- the oldest rows first, found without a scan (signals has signals_created_at_idx)
CREATE INDEX trader_errors_created_at_idx ON trader_errors (created_at);
