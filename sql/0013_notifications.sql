-- 0013: signals pushed to people: channels, which traders notify which channels, and an
-- outbox the notifier delivers from.
--
--   channels               a user's destination: a generic webhook, a Discord or Slack
--                          incoming webhook, a Telegram chat, or an e-mail address. `config`
--                          holds what may be shown (a redacted address, a chat id, an e-mail
--                          address); `secret` what may not (a webhook URL with its token, a
--                          signing key, a bot token). The dashboard may write `secret` but
--                          never read it back: it has no SELECT right on that column.
--   trader_channels        a trader's subscriptions: each new signal of the trader is queued
--                          for each of them
--   notification_outbox    one row per (signal, channel) waiting to be put into a message,
--                          written by a trigger in the very transaction that records the
--                          signal, so a recorded signal is always queued and a rolled-back
--                          one never is; deleted in the transaction that writes the message
--                          carrying it. Cooldown repeats update the signal row and queue
--                          nothing.
--   notification_deliveries one message as sent (one signal, or a digest of several), written
--                          before it is sent and marked when the receiver acknowledged it.
--                          After a crash the notifier resends an unacknowledged message as
--                          it was, with the same idempotency key.
--
-- NOTIFY `notifications` (empty payload) at commit wakes the notifier.

CREATE TABLE channels (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id   bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    kind       text NOT NULL CHECK (kind IN ('webhook', 'discord', 'slack', 'telegram', 'email')),
    config     jsonb NOT NULL DEFAULT '{}',
    secret     jsonb NOT NULL DEFAULT '{}',
    enabled    boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner_id, name)
);

CREATE TABLE trader_channels (
    trader_id  bigint NOT NULL REFERENCES traders (id) ON DELETE CASCADE,
    channel_id bigint NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trader_id, channel_id)
);
CREATE INDEX trader_channels_channel_idx ON trader_channels (channel_id);

CREATE TABLE notification_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id      bigint NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    -- sent to the receiver with every attempt of this message: the signal's id for a single
    -- signal, a key derived from the signals' ids for a digest
    idempotency_key text NOT NULL,
    signal_count    integer NOT NULL CHECK (signal_count > 0),
    -- the message as built when it was first made, resent unchanged
    message         jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- a failed message the user asked to try again: its give-up time counts from here
    retried_at      timestamptz,
    sent_at         timestamptz,
    UNIQUE (channel_id, idempotency_key)
);
CREATE INDEX notification_deliveries_due_idx ON notification_deliveries (next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX notification_deliveries_channel_idx
    ON notification_deliveries (channel_id, created_at DESC);

CREATE TABLE notification_outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    signal_id   text NOT NULL REFERENCES signals (id) ON DELETE CASCADE,
    channel_id  bigint NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (signal_id, channel_id)
);
CREATE INDEX notification_outbox_channel_idx ON notification_outbox (channel_id, id);


-- Queue a new signal for its trader's enabled channels, in the signal's transaction. Definer:
-- the flow writes signals but has no business reading subscriptions or writing the outbox.
CREATE FUNCTION signals_queue_notifications() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    INSERT INTO notification_outbox (signal_id, channel_id)
    SELECT NEW.id, tc.channel_id
    FROM trader_channels tc JOIN channels c ON c.id = tc.channel_id
    WHERE tc.trader_id = NEW.trader_id AND c.enabled
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        PERFORM pg_notify('notifications', '');
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER signals_queue_notifications
    AFTER INSERT ON signals
    FOR EACH ROW EXECUTE FUNCTION signals_queue_notifications();

-- as 0009: pg_catalog first, this schema, pg_temp last
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION signals_queue_notifications() '
                   'SET search_path = pg_catalog, %I, pg_temp', current_schema());
END;
$$;
REVOKE ALL ON FUNCTION signals_queue_notifications() FROM PUBLIC;


-- ---------------------------------------------------------------------------------------
-- Privileges and row-level security
-- ---------------------------------------------------------------------------------------

-- The notifier runs with the flow's login: it reads every channel with its secret, and
-- writes the outbox and the deliveries.
GRANT SELECT ON channels, trader_channels TO klineflow_flow;
GRANT SELECT, DELETE ON notification_outbox TO klineflow_flow;
GRANT SELECT, INSERT, UPDATE ON notification_deliveries TO klineflow_flow;

-- The dashboard, for its user: channels without their secret (written, never read back),
-- subscriptions of the user's traders to the user's channels, the delivery log, and a retry
-- of a failed message.
GRANT SELECT (id, owner_id, name, kind, config, enabled, created_at) ON channels
    TO klineflow_dashboard;
GRANT INSERT (owner_id, name, kind, config, secret) ON channels TO klineflow_dashboard;
GRANT UPDATE (name, config, secret, enabled) ON channels TO klineflow_dashboard;
GRANT DELETE ON channels TO klineflow_dashboard;
GRANT SELECT, INSERT, DELETE ON trader_channels TO klineflow_dashboard;
GRANT SELECT ON notification_outbox TO klineflow_dashboard;
GRANT SELECT ON notification_deliveries TO klineflow_dashboard;
GRANT INSERT (channel_id, idempotency_key, signal_count, message) ON notification_deliveries
    TO klineflow_dashboard;  -- a test message, sent by the notifier (which holds the secret)
GRANT UPDATE (state, next_attempt_at, retried_at) ON notification_deliveries
    TO klineflow_dashboard;

ALTER TABLE channels ENABLE ROW LEVEL SECURITY;
ALTER TABLE trader_channels ENABLE ROW LEVEL SECURITY;
ALTER TABLE notification_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE notification_deliveries ENABLE ROW LEVEL SECURITY;

CREATE POLICY channels_flow_read ON channels FOR SELECT TO klineflow_flow USING (true);
CREATE POLICY trader_channels_flow_read ON trader_channels FOR SELECT TO klineflow_flow
    USING (true);
CREATE POLICY outbox_flow_all ON notification_outbox FOR ALL TO klineflow_flow
    USING (true) WITH CHECK (true);
CREATE POLICY deliveries_flow_all ON notification_deliveries FOR ALL TO klineflow_flow
    USING (true) WITH CHECK (true);

CREATE POLICY channels_dashboard_own ON channels FOR ALL TO klineflow_dashboard
    USING (owner_id = klineflow_current_user_id())
    WITH CHECK (owner_id = klineflow_current_user_id());

-- a subscription joins the user's own trader to the user's own channel (the subqueries are
-- filtered by those tables' own policies, which say the same)
CREATE POLICY trader_channels_dashboard_own ON trader_channels FOR ALL TO klineflow_dashboard
    USING (EXISTS (SELECT FROM channels c WHERE c.id = trader_channels.channel_id
                   AND c.owner_id = klineflow_current_user_id()))
    WITH CHECK (
        EXISTS (SELECT FROM channels c WHERE c.id = trader_channels.channel_id
                AND c.owner_id = klineflow_current_user_id())
        AND EXISTS (SELECT FROM traders t WHERE t.id = trader_channels.trader_id
                    AND t.owner_id = klineflow_current_user_id()));

CREATE POLICY outbox_dashboard_read ON notification_outbox FOR SELECT TO klineflow_dashboard
    USING (EXISTS (SELECT FROM channels c WHERE c.id = notification_outbox.channel_id
                   AND c.owner_id = klineflow_current_user_id()));

CREATE POLICY deliveries_dashboard_own ON notification_deliveries FOR ALL
    TO klineflow_dashboard
    USING (EXISTS (SELECT FROM channels c WHERE c.id = notification_deliveries.channel_id
                   AND c.owner_id = klineflow_current_user_id()));
