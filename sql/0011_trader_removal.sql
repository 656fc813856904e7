-- 0011: removing a trader keeps its signals.
--
-- A row of `traders` cannot simply be deleted: its signals (0001) reference the trader and
-- its version ON DELETE CASCADE, and the dashboard reaches a signal through its trader's
-- owner (row-level security), so the signals would go with it. Removing a trader instead
-- sets `deleted_at` and switches it off (flows.signals.trader_rows.remove_trader, used by
-- `klineflow traders remove` and the dashboard). A removed trader:
--   - is never loaded by the flow (it loads the enabled traders not removed), and the
--     UPDATE that removes it notifies `traders` (0001), so a running flow drops it at once;
--   - stays off and unchanged: no update of a removed row is accepted;
--   - frees its name: names are unique per owner among the traders not removed;
--   - keeps its versions, signals and rule errors, which still name it, visible to its
--     owner as before.

ALTER TABLE traders ADD COLUMN deleted_at timestamptz;

ALTER TABLE traders
    ADD CONSTRAINT traders_removed_is_off CHECK (deleted_at IS NULL OR NOT enabled);

ALTER TABLE traders DROP CONSTRAINT traders_owner_id_name_key;
CREATE UNIQUE INDEX traders_owner_name_live ON traders (owner_id, name)
    WHERE deleted_at IS NULL;

CREATE FUNCTION traders_removed_is_final() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF OLD.deleted_at IS NOT NULL THEN
        RAISE EXCEPTION 'trader % was removed: it can no longer be changed', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER traders_removed_is_final
    BEFORE UPDATE ON traders
    FOR EACH ROW EXECUTE FUNCTION traders_removed_is_final();
