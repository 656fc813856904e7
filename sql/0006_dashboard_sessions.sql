-- 0006: the dashboard's login can no longer act for a user it cannot prove, nor touch accounts.
--
-- Until now a dashboard transaction named its user with set_config('klineflow.user_id', ..),
-- which anyone holding the dashboard's PostgreSQL login could set to any id, and its
-- klineflow_dashboard_app role read and rewrote users.password_hash (0004). Now:
--
-- 1. Sessions. Signing in gives a random token, returned once; PostgreSQL keeps only its
--    SHA-256 (table sessions, readable by the owner only) with an expiry. A transaction names
--    its user by setting the token: set_config('klineflow.session', <token>, true), and
--    klineflow_current_user_id() (used by every row-level security policy) is that token's
--    live session's user, else NULL (nothing visible). The old setting klineflow.user_id
--    means nothing any more.
-- 2. Accounts are the owner's. Neither dashboard role may read or change users, sessions, or
--    the sign-in tables. Everything sign-in needs goes through SECURITY DEFINER functions
--    (search path pinned, EXECUTE for the dashboard roles only), which never hand out a
--    stored hash:
--      klineflow_auth_params(name)           the argon2 parameters and salt of the name's
--                                            hash (its encoded form minus the digest); for
--                                            an unknown name, a salt derived from the name
--                                            and a secret, so names cannot be enumerated
--      klineflow_sign_in_attempt(name, hash, rehash)
--                                            compares the encoded argon2 hash the caller
--                                            computed from the typed password with the
--                                            stored one (plain equality of the full encoded
--                                            strings: SQL has no constant-time comparison),
--                                            counts a failure, and returns only a ticket
--      klineflow_sign_in_result(ticket)      the outcome, and a session when it succeeded;
--                                            refused inside the transaction that made the
--                                            attempt, so a caller cannot learn the outcome
--                                            and roll the failure count back
--      klineflow_sso_sign_in(subject)        a session for 'oidc:<subject>' (made on first
--                                            use), only while the owner has single sign-on
--                                            switched on (auth_settings.sso_enabled)
--      klineflow_change_password(token, old, new)   needs a live session and the old hash
--      klineflow_sign_out(token)             ends a session
-- 3. Backtest runs belong to their owner: the dashboard writes them as the signed-in user
--    under row-level security (insert, update, signals) instead of through
--    klineflow_dashboard_app, whose policies (USING true) let its members read every run.
-- 4. Policies call klineflow_current_user_id() through a scalar subquery, so PostgreSQL
--    evaluates it once per query (an InitPlan), not once per row.
-- 5. traders_record_version (0001) gets the same pinned search path: without pg_temp last, a
--    temporary table named trader_versions shadowed the real one inside it.
--
-- Existing databases: users keep their hashes (the same argon2 strings are compared);
-- logins keep their group roles; single sign-on starts switched on where accounts made by it
-- exist already, else off (`klineflow users sso on`).


-- ---------------------------------------------------------------------------------------
-- Tables: the owner's alone (no grants; row-level security on and no policy, so even a
-- grant by mistake shows no row)
-- ---------------------------------------------------------------------------------------

CREATE TABLE auth_settings (
    only_row        boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    sso_enabled     boolean NOT NULL DEFAULT false,
    session_hours   integer NOT NULL DEFAULT 12 CHECK (session_hours BETWEEN 1 AND 720),
    max_failures    integer NOT NULL DEFAULT 10 CHECK (max_failures >= 1),
    failure_window  interval NOT NULL DEFAULT '15 minutes' CHECK (failure_window > '0'),
    -- makes the salts shown for unknown names; never leaves the database
    fake_salt_key   bytea NOT NULL
);

INSERT INTO auth_settings (sso_enabled, fake_salt_key)
VALUES (EXISTS (SELECT FROM users WHERE name LIKE 'oidc:%'),
        decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));

CREATE TABLE sessions (
    token_sha256 bytea PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    via          text NOT NULL CHECK (via IN ('password', 'sso')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

-- failed sign-ins per typed name (known or not, so throttling tells nothing either)
CREATE TABLE sign_in_failures (
    name         text PRIMARY KEY,
    failures     integer NOT NULL,
    window_start timestamptz NOT NULL
);
CREATE INDEX sign_in_failures_window_idx ON sign_in_failures (window_start);

-- an attempt's outcome, waiting for its ticket in a later transaction
CREATE TABLE sign_in_attempts (
    ticket_sha256 bytea PRIMARY KEY,
    xact          xid8 NOT NULL,
    user_id       bigint REFERENCES users (id) ON DELETE CASCADE,
    outcome       text NOT NULL CHECK (outcome IN ('ok', 'refused', 'throttled')),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sign_in_attempts_created_idx ON sign_in_attempts (created_at);

ALTER TABLE auth_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE sign_in_failures ENABLE ROW LEVEL SECURITY;
ALTER TABLE sign_in_attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE users ENABLE ROW LEVEL SECURITY;


-- ---------------------------------------------------------------------------------------
-- Accounts are the owner's: what 0001 and 0004 gave the dashboard roles on users goes
-- ---------------------------------------------------------------------------------------

REVOKE ALL ON users FROM klineflow_dashboard, klineflow_dashboard_app;
REVOKE ALL (id, name, password_hash, created_at) ON users
    FROM klineflow_dashboard, klineflow_dashboard_app;


-- ---------------------------------------------------------------------------------------
-- Sessions and the current user
-- ---------------------------------------------------------------------------------------

-- The user of the live session whose token this transaction set, else NULL (which matches
-- no owner: a forgotten, made-up, expired or ended token shows nothing).
CREATE OR REPLACE FUNCTION klineflow_current_user_id() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT s.user_id FROM sessions s
    WHERE s.token_sha256 = sha256(convert_to(current_setting('klineflow.session', true), 'UTF8'))
      AND s.expires_at > now()
$$;

-- A new session for a user: (token, expiry). Internal: no role may call it directly.
CREATE FUNCTION klineflow_open_session(p_user_id bigint, p_via text,
                                       OUT token text, OUT expires_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
BEGIN
    DELETE FROM sessions s WHERE s.expires_at < now();
    -- 244 random bits (two version-4 UUIDs from the server's strong random source)
    token := replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
    expires_at := now() + make_interval(hours => (SELECT session_hours FROM auth_settings));
    INSERT INTO sessions (token_sha256, user_id, via, expires_at)
    VALUES (sha256(convert_to(token, 'UTF8')), p_user_id, p_via, expires_at);
END;
$$;

-- An argon2id hash in the encoded form argon2-cffi writes, with parameters no weaker than
-- OWASP's minimum (19 MiB, 2 passes): what a rehash or a new password may store.
CREATE FUNCTION klineflow_usable_hash(p_hash text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(
        p_hash ~ '^\$argon2id\$v=19\$m=[0-9]{1,8},t=[0-9]{1,4},p=[0-9]{1,3}\$[A-Za-z0-9+/]{11,64}\$[A-Za-z0-9+/]{22,128}$'
        AND (regexp_match(p_hash, '\$m=([0-9]+)'))[1]::bigint >= 19456
        AND (regexp_match(p_hash, ',t=([0-9]+)'))[1]::bigint >= 2,
        false)
$$;


-- ---------------------------------------------------------------------------------------
-- Signing in with a password
-- ---------------------------------------------------------------------------------------

-- The name's argon2 parameters and salt ('$argon2id$v=19$m=..,t=..,p=..$<salt>') and the
-- length in bytes of its digest. A name without a usable hash (unknown, single sign-on,
-- never given a password) gets the parameters of the newest hash and a salt made from the
-- name and a secret: the same every time, like a real one.
CREATE FUNCTION klineflow_auth_params(p_name text, OUT params text, OUT hash_len integer)
LANGUAGE plpgsql STABLE SECURITY DEFINER AS $$
DECLARE
    stored text;
BEGIN
    SELECT u.password_hash INTO stored FROM users u WHERE u.name = p_name;
    IF stored ~ '^\$argon2id\$v=19\$m=[0-9]+,t=[0-9]+,p=[0-9]+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$' THEN
        params := regexp_replace(stored, '\$[^$]*$', '');
        hash_len := (length(substring(stored FROM '[^$]*$')) * 3) / 4;
        RETURN;
    END IF;
    params := coalesce(
        (SELECT regexp_replace(u.password_hash, '\$[^$]*\$[^$]*$', '') FROM users u
         WHERE klineflow_usable_hash(u.password_hash) ORDER BY u.id DESC LIMIT 1),
        '$argon2id$v=19$m=65536,t=3,p=4')
        || '$' || rtrim(encode(substring(
            sha256((SELECT fake_salt_key FROM auth_settings) || convert_to(coalesce(p_name, ''), 'UTF8'))
            FROM 1 FOR 16), 'base64'), '=');
    hash_len := 32;
END;
$$;

-- Compare the caller's encoded hash of the typed password with the stored one; count a
-- failure (throttled past max_failures within failure_window, per typed name); on success
-- store p_rehash if given and usable (new argon2 parameters: only someone who could sign in
-- can send it). Returns a ticket for klineflow_sign_in_result, never the outcome.
CREATE FUNCTION klineflow_sign_in_attempt(p_name text, p_hash text, p_rehash text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
    cfg auth_settings;
    ticket text := replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
    uid bigint;
    stored text;
    failed integer;
    outcome text;
BEGIN
    IF p_name IS NULL OR length(p_name) > 200 THEN
        RAISE EXCEPTION 'a user name of at most 200 characters is required'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO cfg FROM auth_settings;
    DELETE FROM sign_in_failures f WHERE f.window_start < now() - cfg.failure_window;
    DELETE FROM sign_in_attempts a WHERE a.created_at < now() - interval '5 minutes';
    SELECT f.failures INTO failed FROM sign_in_failures f WHERE f.name = p_name FOR UPDATE;
    SELECT u.id, u.password_hash INTO uid, stored FROM users u WHERE u.name = p_name;
    IF coalesce(failed, 0) >= cfg.max_failures THEN
        outcome := 'throttled';
        uid := NULL;
    ELSIF stored IS NOT NULL AND p_hash IS NOT NULL AND stored = p_hash THEN
        outcome := 'ok';
        DELETE FROM sign_in_failures f WHERE f.name = p_name;
        IF p_rehash IS NOT NULL AND klineflow_usable_hash(p_rehash) THEN
            UPDATE users u SET password_hash = p_rehash WHERE u.id = uid;
        END IF;
    ELSE
        outcome := 'refused';
        uid := NULL;
        INSERT INTO sign_in_failures AS f (name, failures, window_start)
        VALUES (p_name, 1, now())
        ON CONFLICT (name) DO UPDATE SET failures = f.failures + 1;
    END IF;
    INSERT INTO sign_in_attempts (ticket_sha256, xact, user_id, outcome)
    VALUES (sha256(convert_to(ticket, 'UTF8')), pg_current_xact_id(), uid, outcome);
    RETURN ticket;
END;
$$;

-- The outcome of an attempt committed before ('ok', 'refused', 'throttled'), once; with a new
-- session (token returned only here, only once) when it is 'ok'. Nothing for an unknown or
-- spent ticket; an error inside the attempt's own transaction.
CREATE FUNCTION klineflow_sign_in_result(p_ticket text)
RETURNS TABLE (outcome text, user_id bigint, name text, token text, expires_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
    a sign_in_attempts;
BEGIN
    DELETE FROM sign_in_attempts t
    WHERE t.ticket_sha256 = sha256(convert_to(p_ticket, 'UTF8'))
      AND t.created_at > now() - interval '5 minutes'
    RETURNING * INTO a;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF a.xact = pg_current_xact_id() THEN
        RAISE EXCEPTION 'commit the sign-in attempt before asking for its outcome'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    outcome := a.outcome;
    IF a.outcome = 'ok' THEN
        user_id := a.user_id;
        SELECT u.name INTO name FROM users u WHERE u.id = a.user_id;
        SELECT o.token, o.expires_at INTO token, expires_at
        FROM klineflow_open_session(a.user_id, 'password') o;
    END IF;
    RETURN NEXT;
END;
$$;


-- ---------------------------------------------------------------------------------------
-- Single sign-on, password change, signing out
-- ---------------------------------------------------------------------------------------

-- A session for the single sign-on identity `p_subject` (an e-mail or the provider's
-- subject), its account 'oidc:<subject>' made on first use, without a password. The
-- dashboard vouches for the identity, so this works only while the owner has switched
-- single sign-on on, and never for an account that has a password.
CREATE FUNCTION klineflow_sso_sign_in(p_subject text)
RETURNS TABLE (user_id bigint, name text, token text, expires_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
    account text := 'oidc:' || btrim(coalesce(p_subject, ''));
    stored text;
BEGIN
    IF NOT (SELECT sso_enabled FROM auth_settings) THEN
        RAISE EXCEPTION 'single sign-on is switched off in this database'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'the owner switches it on with: klineflow users sso on';
    END IF;
    IF account = 'oidc:' OR length(account) > 200 OR account ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'the identity must be 1 to 195 printable characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO users (name) VALUES (account) ON CONFLICT DO NOTHING;
    SELECT u.id, u.password_hash INTO user_id, stored FROM users u WHERE u.name = account;
    IF stored IS NOT NULL THEN
        RAISE EXCEPTION 'the account % signs in with a password', account
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    name := account;
    SELECT o.token, o.expires_at INTO token, expires_at
    FROM klineflow_open_session(user_id, 'sso') o;
    RETURN NEXT;
END;
$$;

-- A new password for the live session's user, given the old one's hash; the user's other
-- sessions end. False when the session is not live or the old hash is wrong.
CREATE FUNCTION klineflow_change_password(p_token text, p_old_hash text, p_new_hash text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
    uid bigint;
    mine bytea := sha256(convert_to(p_token, 'UTF8'));
BEGIN
    IF NOT klineflow_usable_hash(p_new_hash) THEN
        RAISE EXCEPTION 'the new password hash is not an argon2id hash this database accepts'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT s.user_id INTO uid FROM sessions s
    WHERE s.token_sha256 = mine AND s.expires_at > now();
    IF uid IS NULL THEN
        RETURN false;
    END IF;
    UPDATE users u SET password_hash = p_new_hash
    WHERE u.id = uid AND u.password_hash IS NOT NULL AND u.password_hash = p_old_hash;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    DELETE FROM sessions s WHERE s.user_id = uid AND s.token_sha256 <> mine;
    RETURN true;
END;
$$;

-- End a session; true when there was one.
CREATE FUNCTION klineflow_sign_out(p_token text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
BEGIN
    DELETE FROM sessions s WHERE s.token_sha256 = sha256(convert_to(p_token, 'UTF8'));
    RETURN FOUND;
END;
$$;


-- ---------------------------------------------------------------------------------------
-- Search paths and EXECUTE rights
-- ---------------------------------------------------------------------------------------

-- pg_catalog first (no object can shadow a built-in), then the schema migrated into, and
-- pg_temp last (left out, it would be searched first for tables: a caller's temporary
-- table could stand in for ours).
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'klineflow_current_user_id()', 'klineflow_open_session(bigint, text)',
        'klineflow_usable_hash(text)', 'klineflow_auth_params(text)',
        'klineflow_sign_in_attempt(text, text, text)', 'klineflow_sign_in_result(text)',
        'klineflow_sso_sign_in(text)', 'klineflow_change_password(text, text, text)',
        'klineflow_sign_out(text)', 'traders_record_version()'
    ]::regprocedure[] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, %I, pg_temp',
                       f, current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END;
$$;

GRANT EXECUTE ON FUNCTION klineflow_current_user_id() TO klineflow_dashboard,
    klineflow_dashboard_app;
GRANT EXECUTE ON FUNCTION klineflow_auth_params(text), klineflow_sign_in_attempt(text, text, text),
    klineflow_sign_in_result(text), klineflow_sso_sign_in(text),
    klineflow_change_password(text, text, text), klineflow_sign_out(text)
    TO klineflow_dashboard_app;


-- ---------------------------------------------------------------------------------------
-- Policies: the current user once per query; backtest runs are their owner's
-- ---------------------------------------------------------------------------------------

ALTER POLICY traders_dashboard_own ON traders
    USING (owner_id = (SELECT klineflow_current_user_id()))
    WITH CHECK (owner_id = (SELECT klineflow_current_user_id()));

ALTER POLICY signals_dashboard_read ON signals
    USING (EXISTS (
        SELECT FROM traders t
        WHERE t.id = signals.trader_id AND t.owner_id = (SELECT klineflow_current_user_id())));

ALTER POLICY signals_dashboard_status ON signals
    USING (EXISTS (
        SELECT FROM traders t
        WHERE t.id = signals.trader_id AND t.owner_id = (SELECT klineflow_current_user_id())));

ALTER POLICY trader_errors_dashboard_read ON trader_errors
    USING (EXISTS (
        SELECT FROM traders t
        WHERE t.id = trader_errors.trader_id
          AND t.owner_id = (SELECT klineflow_current_user_id())));

-- runs made from the command line (no owner) stay visible to every signed-in user (0003)
ALTER POLICY backtest_runs_dashboard_read ON backtest_runs
    USING (owner_id IS NULL OR owner_id = (SELECT klineflow_current_user_id()));

ALTER POLICY backtest_signals_dashboard_read ON backtest_signals
    USING (EXISTS (
        SELECT FROM backtest_runs r
        WHERE r.id = backtest_signals.run_id
          AND (r.owner_id IS NULL OR r.owner_id = (SELECT klineflow_current_user_id()))));

-- the process role no longer writes (nor reads) runs: every row was its (USING true)
DROP POLICY backtest_runs_dashboard_app ON backtest_runs;
DROP POLICY backtest_signals_dashboard_app ON backtest_signals;
REVOKE ALL ON backtest_runs, backtest_signals FROM klineflow_dashboard_app;

-- the signed-in user records her own runs and their signals
GRANT INSERT (owner_id, inputs, traders, params, package_version) ON backtest_runs
    TO klineflow_dashboard;
GRANT UPDATE (status, trades, klines, seconds, finished_at, inputs, params) ON backtest_runs
    TO klineflow_dashboard;
GRANT INSERT ON backtest_signals TO klineflow_dashboard;

CREATE POLICY backtest_runs_dashboard_insert ON backtest_runs
    FOR INSERT TO klineflow_dashboard
    WITH CHECK (owner_id = (SELECT klineflow_current_user_id()));
CREATE POLICY backtest_runs_dashboard_update ON backtest_runs
    FOR UPDATE TO klineflow_dashboard
    USING (owner_id = (SELECT klineflow_current_user_id()))
    WITH CHECK (owner_id = (SELECT klineflow_current_user_id()));
CREATE POLICY backtest_signals_dashboard_insert ON backtest_signals
    FOR INSERT TO klineflow_dashboard
    WITH CHECK (EXISTS (
        SELECT FROM backtest_runs r
        WHERE r.id = backtest_signals.run_id
          AND r.owner_id = (SELECT klineflow_current_user_id())));


-- ---------------------------------------------------------------------------------------
-- Timeouts of the dashboard logins made before this migration (new ones get them from
-- `klineflow access pg-login`); skipped, with a notice, where the owner may not alter them
-- ---------------------------------------------------------------------------------------

DO $$
DECLARE
    login text;
BEGIN
    FOR login IN
        SELECT u.rolname FROM pg_auth_members m
        JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
        WHERE g.rolname = 'klineflow_dashboard_app' AND u.rolcanlogin AND NOT u.rolsuper
    LOOP
        BEGIN
            EXECUTE format('ALTER ROLE %I SET statement_timeout = %L', login, '10s');
            EXECUTE format('ALTER ROLE %I SET idle_in_transaction_session_timeout = %L',
                           login, '60s');
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'could not set the timeouts of the login %: run klineflow access pg-login for it', login;
        END;
    END LOOP;
END;
$$;
