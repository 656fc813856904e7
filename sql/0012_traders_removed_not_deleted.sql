-- 0012: the dashboard removes a trader (0011: deleted_at, its signals kept); it never deletes
-- the row, whose signals would go with it (they cascade). Its role loses the right to DELETE
-- traders, so no request, crafted or not, can take a user's signals away with the trader.
-- (The owner's login, which migrates and administers, keeps it.)

REVOKE DELETE ON traders FROM klineflow_dashboard;
