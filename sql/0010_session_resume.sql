-- 0010: a browser that kept its session token resumes the session.
--
-- The dashboard keeps a signed-in user's session token in a cookie, so a reload, a new tab or
-- a shared link stays signed in (until sign-out or expiry). A new browser session then holds
-- only the token: klineflow_session_user(token) names the live session's user (id, name) and
-- its expiry, or nothing for a forgotten, made-up, expired or ended token. The token is the
-- credential already (any transaction may set it); this adds only the user's name, which
-- the dashboard's login may not read from users itself.

CREATE FUNCTION klineflow_session_user(p_token text)
RETURNS TABLE (user_id bigint, name text, expires_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT s.user_id, u.name, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id
    WHERE s.token_sha256 = sha256(convert_to(p_token, 'UTF8')) AND s.expires_at > now()
$$;

-- as 0006 and 0009: pg_catalog first, this schema, pg_temp last
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION klineflow_session_user(text) '
                   'SET search_path = pg_catalog, %I, pg_temp', current_schema());
END;
$$;

REVOKE ALL ON FUNCTION klineflow_session_user(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION klineflow_session_user(text) TO klineflow_dashboard_app;
