-- 0008: what one user's traders may take of a flow shared by everyone.
--
-- The flow loads every enabled trader into memory and evaluates each on every kline of its
-- symbols. The rule checker bounds one rule's cost; these bound how many and how large, for
-- whoever writes the rows (the dashboard's login included), in the database itself:
--   - at most `max_enabled_traders` enabled traders per user (klineflow_limits, default 100;
--     the owner changes it with UPDATE klineflow_limits ...),
--   - a rule of at most 2,000 characters (the checker's own cap), a name of at most 100, a
--     description of at most 2,000, a symbols pattern of at most 64 and a list of at most
--     2,000 symbols.
-- The checks are NOT VALID: rows from before stay as they are; any insert or update is held
-- to them.

CREATE TABLE klineflow_limits (
    name  text PRIMARY KEY,
    value bigint NOT NULL CHECK (value >= 0)
);
INSERT INTO klineflow_limits (name, value) VALUES ('max_enabled_traders', 100);
ALTER TABLE klineflow_limits ENABLE ROW LEVEL SECURITY;  -- no policy: the owner only

ALTER TABLE traders
    ADD CONSTRAINT traders_expression_size CHECK (length(expression) <= 2000) NOT VALID,
    ADD CONSTRAINT traders_name_size CHECK (length(name) BETWEEN 1 AND 100) NOT VALID,
    ADD CONSTRAINT traders_description_size CHECK (length(description) <= 2000) NOT VALID,
    ADD CONSTRAINT traders_pattern_size
        CHECK (symbols_pattern IS NULL OR length(symbols_pattern) <= 64) NOT VALID,
    ADD CONSTRAINT traders_symbols_size CHECK (cardinality(symbols) <= 2000) NOT VALID;

-- The count is taken under a per-owner transaction lock, so two sessions adding at once
-- cannot both pass. SECURITY DEFINER: the limit and the other rows are counted whatever
-- the caller may see.
CREATE FUNCTION traders_enforce_quota() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    allowed bigint;
    enabled_now bigint;
BEGIN
    IF NOT NEW.enabled THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.enabled AND OLD.owner_id = NEW.owner_id THEN
        RETURN NEW;  -- already counted
    END IF;
    SELECT value INTO allowed FROM klineflow_limits WHERE name = 'max_enabled_traders';
    IF allowed IS NULL THEN
        RETURN NEW;
    END IF;
    PERFORM pg_advisory_xact_lock(1801875829, (NEW.owner_id % 2147483647)::integer);  -- "kfqu"
    SELECT count(*) INTO enabled_now FROM traders
        WHERE owner_id = NEW.owner_id AND enabled AND id IS DISTINCT FROM NEW.id;
    IF enabled_now >= allowed THEN
        RAISE EXCEPTION 'a user may have at most % enabled traders; disable or delete one first',
            allowed USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER traders_enforce_quota
    BEFORE INSERT OR UPDATE OF enabled, owner_id ON traders
    FOR EACH ROW EXECUTE FUNCTION traders_enforce_quota();
