-- The fleet's authority: schema `pim` (tables, owned by pim_owner, readable by nobody else)
-- and schema `pim_api` (the only door: SECURITY DEFINER functions, EXECUTE for pim_host).
-- Applied by `pimd --fleet-setup` through a superuser connection, in one transaction, as
-- often as wanted: every statement is idempotent (IF NOT EXISTS, OR REPLACE), and a
-- pim.schema_version row says which version the functions are.
--
-- Invariants held here, whatever a host sends: a host is the login it connected with
-- (session_user through pim.hosts.login, never an argument); a grant row is inserted only by
-- pim_api.activate (after the user's fresh TOTP code, when the role needs it) or by
-- pim_api.approve (after the last required approval, each with the approver's fresh code);
-- a TOTP step is accepted once (the user's pim.mfa row is locked, step > last_step); wrong
-- codes count and lock out as daemon/src/mfa.rs does; times come from now(); every change
-- writes its pim.audit rows in the same transaction and wakes the hosts (NOTIFY pim_wake).
--
-- Refusals carry SQLSTATE class PM (see authority.rs: PM001 not eligible, PM002 invalid
-- argument, PM003 MFA required, PM004 not enrolled, PM005 invalid code, PM006 locked out,
-- PM007 permission denied, PM008 not found, PM009 conflict). A refusal that must keep what
-- it wrote (a wrong code's failure count) is returned as {"refused": {"kind", "message"}}
-- instead of raised, so the transaction commits.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pim_owner') THEN
        -- CREATEROLE: pim_api.add_host creates the hosts' logins.
        CREATE ROLE pim_owner NOLOGIN CREATEROLE;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pim_host') THEN
        CREATE ROLE pim_host NOLOGIN;
    END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS pim_crypto;
DO $$
DECLARE
    installed text;
BEGIN
    SELECT extnamespace::regnamespace::text INTO installed
        FROM pg_extension WHERE extname = 'pgcrypto';
    IF installed IS NULL THEN
        CREATE EXTENSION pgcrypto SCHEMA pim_crypto;
    ELSIF installed <> 'pim_crypto' THEN
        RAISE EXCEPTION 'pgcrypto is installed in schema %, pim needs it in pim_crypto '
            '(ALTER EXTENSION pgcrypto SET SCHEMA pim_crypto)', installed;
    END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS pim AUTHORIZATION pim_owner;
CREATE SCHEMA IF NOT EXISTS pim_api AUTHORIZATION pim_owner;
REVOKE ALL ON SCHEMA pim, pim_api, pim_crypto FROM PUBLIC;
GRANT USAGE ON SCHEMA pim_crypto TO pim_owner;
GRANT USAGE ON SCHEMA pim_api TO pim_host;
-- PostgreSQL 16 and later: a CREATEROLE role grants only the roles it administers.
GRANT pim_host TO pim_owner WITH ADMIN OPTION;
-- pim_owner ends host sessions (pim.cut_stuck_hosts, pim_api.disable_host) as a member of
-- each host login (pim.limit_host_login), not with pg_signal_backend, which would let it end
-- any other application's sessions too (granted by an earlier version).
REVOKE pg_signal_backend FROM pim_owner;

SET LOCAL ROLE pim_owner;

CREATE TABLE IF NOT EXISTS pim.schema_version (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version integer NOT NULL
);

CREATE TABLE IF NOT EXISTS pim.policies (
    version bigserial PRIMARY KEY,
    text text NOT NULL,
    normalized jsonb NOT NULL,
    pushed_by text NOT NULL,
    pushed_at bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS pim.hosts (
    name text PRIMARY KEY,
    login name NOT NULL UNIQUE,
    tags text[] NOT NULL DEFAULT '{}',
    added_at bigint NOT NULL,
    last_seen bigint,
    last_sync bigint,
    skew_ms bigint
);

CREATE TABLE IF NOT EXISTS pim.mfa (
    "user" text PRIMARY KEY,
    secret bytea NOT NULL,
    confirmed boolean NOT NULL DEFAULT false,
    last_step bigint,
    failures integer NOT NULL DEFAULT 0,
    window_start bigint NOT NULL DEFAULT 0,
    locked_until bigint NOT NULL DEFAULT 0,
    enrolled_at bigint NOT NULL
);
-- The host an enrolment was started on: only it may confirm it, and no other host may
-- replace it while it waits (pim.enrolment_ttl_secs).
ALTER TABLE pim.mfa ADD COLUMN IF NOT EXISTS enrolled_on text;

-- Enrolment tickets: a user without a confirmed enrolment enrols only with the one-time
-- ticket a fleet administrator issued for them (pim_api.mfa_ticket, or pimd --fleet-setup
-- --enrol-admin for the first administrators); otherwise the first host to ask would enrol
-- an administrator the policy names with a secret of its own. One ticket per user (a new
-- one replaces it), stored hashed, bound to the user, single use, expiring; wrong tickets
-- count on it and void it at the [mfa] max_failures.
CREATE TABLE IF NOT EXISTS pim.enrolment_tickets (
    "user" text PRIMARY KEY,
    ticket_hash bytea NOT NULL,
    issued_by text NOT NULL,
    issued_on text NOT NULL,
    issued_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    failures integer NOT NULL DEFAULT 0
);
-- A ticket offered by pim_api.offer_ticket, in a transaction of its own (as code_attempts):
-- it counted as a wrong ticket when offered, so rolling back pim_api.enrol undoes nothing.
CREATE TABLE IF NOT EXISTS pim.ticket_attempts (
    id bigserial PRIMARY KEY,
    "user" text NOT NULL,
    ticket_hash bytea NOT NULL,
    xact xid8 NOT NULL,
    host text NOT NULL,
    created_at bigint NOT NULL,
    used boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS ticket_attempts_user ON pim.ticket_attempts ("user", ticket_hash);

-- A TOTP code offered by pim_api.offer_code, in a transaction of its own: it was counted as
-- a wrong code when offered, so rolling back the call that checks it undoes nothing.
CREATE TABLE IF NOT EXISTS pim.code_attempts (
    id bigserial PRIMARY KEY,
    "user" text NOT NULL,
    code_hash bytea NOT NULL,
    xact xid8 NOT NULL,
    host text NOT NULL,
    created_at bigint NOT NULL,
    used boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS code_attempts_user ON pim.code_attempts ("user", code_hash);

-- Wrong codes per (user, host): a host is an untrusted peer, so its wrong codes lock the
-- user out on that host alone, with the policy's [mfa] rules. The fleet-wide lockout
-- (pim.mfa's failures, window_start, locked_until) takes pim.fleet_lockout_factor() times
-- max_failures, to which one host adds at most max_failures per fleet window (fleet_share
-- in the window starting at fleet_window): no single host can lock a user out of the
-- others, and many hosts guessing together are still stopped.
CREATE TABLE IF NOT EXISTS pim.mfa_host_failures (
    "user" text NOT NULL,
    host text NOT NULL,
    failures integer NOT NULL DEFAULT 0,
    window_start bigint NOT NULL DEFAULT 0,
    locked_until bigint NOT NULL DEFAULT 0,
    fleet_share integer NOT NULL DEFAULT 0,
    fleet_window bigint NOT NULL DEFAULT 0,
    PRIMARY KEY ("user", host)
);

-- A host an administrator disabled (pim_api.disable_host): its login is NOLOGIN and
-- pim.caller() refuses its calls.
ALTER TABLE pim.hosts ADD COLUMN IF NOT EXISTS disabled_at bigint;
ALTER TABLE pim.hosts ADD COLUMN IF NOT EXISTS disabled_by text;

CREATE TABLE IF NOT EXISTS pim.requests (
    id bigserial PRIMARY KEY,
    "user" text NOT NULL,
    -- The groups the filing host said the user is in (the database relied on its word).
    user_groups text[] NOT NULL,
    role text NOT NULL,
    duration_secs bigint NOT NULL,
    reason text NOT NULL,
    ticket text NOT NULL,
    only_host text,
    filed_on text NOT NULL,
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    approvals_required integer NOT NULL,
    state text NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'cancelled', 'expired')),
    decided_at bigint
);

CREATE TABLE IF NOT EXISTS pim.approvals (
    request_id bigint NOT NULL REFERENCES pim.requests (id),
    approver text NOT NULL,
    approver_groups text[] NOT NULL,
    given_on text NOT NULL,
    comment text NOT NULL,
    at bigint NOT NULL,
    PRIMARY KEY (request_id, approver)
);

CREATE TABLE IF NOT EXISTS pim.grants (
    id bigserial PRIMARY KEY,
    "user" text NOT NULL,
    role text NOT NULL,
    "group" text NOT NULL,
    -- The role's host scope when granted ('{}': every host), narrowed by only_host.
    scope text[] NOT NULL,
    only_host text,
    started_at bigint NOT NULL,
    ends_at bigint NOT NULL,
    reason text NOT NULL,
    ticket text NOT NULL,
    request_id bigint REFERENCES pim.requests (id),
    granted_on text NOT NULL,
    ended_at bigint,
    end_reason text
);
CREATE INDEX IF NOT EXISTS grants_live ON pim.grants (ends_at) WHERE ended_at IS NULL;

CREATE TABLE IF NOT EXISTS pim.audit (
    id bigserial PRIMARY KEY,
    at bigint NOT NULL,
    -- The host the record came from or the call was made on, stamped by the database.
    host text NOT NULL,
    -- The record's id in that host's local audit, for records it shipped; NULL for the
    -- authority's own.
    local_id bigint,
    actor text NOT NULL,
    action text NOT NULL,
    "user" text NOT NULL,
    role text NOT NULL,
    outcome text NOT NULL,
    reason text NOT NULL DEFAULT '',
    ticket text NOT NULL DEFAULT '',
    detail text NOT NULL DEFAULT '',
    prev text NOT NULL DEFAULT '',
    hash text NOT NULL DEFAULT '',
    UNIQUE (host, local_id)
);
-- pim.audit_refusal's look for a recent refusal, without walking a host's whole history.
CREATE INDEX IF NOT EXISTS audit_host_refusals ON pim.audit (host, action, at)
    WHERE local_id IS NULL AND outcome = 'refused';

-- ---------------------------------------------------------------------------------------
-- Internal helpers (schema pim: no host can reach them).

CREATE OR REPLACE FUNCTION pim.now_s() RETURNS bigint
LANGUAGE sql STABLE SET search_path = pim, pg_catalog, pg_temp
AS $$ SELECT floor(extract(epoch FROM now()))::bigint $$;

CREATE OR REPLACE FUNCTION pim.refuse(kind text, message text) RETURNS void
LANGUAGE plpgsql SET search_path = pim, pg_catalog, pg_temp
AS $$ BEGIN RAISE EXCEPTION USING ERRCODE = kind, MESSAGE = message; END $$;

CREATE OR REPLACE FUNCTION pim.refusal(kind text, message text) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pim, pg_catalog, pg_temp
AS $$ SELECT jsonb_build_object('refused', jsonb_build_object('kind', kind, 'message', message)) $$;

-- A text argument: present, at most max_bytes, no control characters.
CREATE OR REPLACE FUNCTION pim.check_text(what text, value text, max_bytes integer) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pim, pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL THEN
        PERFORM pim.refuse('PM002', what || ' is missing');
    END IF;
    IF octet_length(value) > max_bytes THEN
        PERFORM pim.refuse('PM002', format('%s is longer than %s bytes', what, max_bytes));
    END IF;
    IF value ~ '[[:cntrl:]]' THEN
        PERFORM pim.refuse('PM002', what || ' holds control characters');
    END IF;
    RETURN value;
END
$$;

-- A user, group, role or host name: what pim-config's check_name accepts, at most 64 bytes.
CREATE OR REPLACE FUNCTION pim.check_name(what text, value text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pim, pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pim.check_text(what, value, 64);
    IF value !~ '^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$' THEN
        PERFORM pim.refuse('PM002', format('%s %s is not a valid name', what, quote_literal(value)));
    END IF;
    RETURN value;
END
$$;

CREATE OR REPLACE FUNCTION pim.check_names(what text, value text[]) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    one text;
BEGIN
    IF value IS NULL THEN
        PERFORM pim.refuse('PM002', what || ' is missing');
    END IF;
    IF cardinality(value) > 1024 THEN
        PERFORM pim.refuse('PM002', what || ' has more than 1024 names');
    END IF;
    FOREACH one IN ARRAY value LOOP
        PERFORM pim.check_name(what, one);
    END LOOP;
    RETURN value;
END
$$;

-- The calling host, from the login it connected with. Every call first ends the host
-- sessions stuck in a transaction (pim.cut_stuck_hosts, below).
CREATE OR REPLACE FUNCTION pim.caller() RETURNS pim.hosts
LANGUAGE plpgsql SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts;
BEGIN
    PERFORM pim.cut_stuck_hosts();
    SELECT * INTO h FROM pim.hosts WHERE login = session_user;
    IF NOT FOUND THEN
        PERFORM pim.refuse('PM007', format('the database login %s is not a pim host', session_user));
    END IF;
    IF h.disabled_at IS NOT NULL THEN
        PERFORM pim.refuse('PM007', format('the host %s was disabled by %s; the fleet refuses its calls '
            '(an administrator runs ''pim admin host enable %s'' to let it back)', h.name, h.disabled_by, h.name));
    END IF;
    RETURN h;
END
$$;

CREATE OR REPLACE FUNCTION pim.current_policy() RETURNS pim.policies
LANGUAGE plpgsql STABLE SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    p pim.policies;
BEGIN
    SELECT * INTO p FROM pim.policies ORDER BY version DESC LIMIT 1;
    IF NOT FOUND THEN
        PERFORM pim.refuse('PM008', 'the fleet has no policy yet (pimd --fleet-setup stores the first)');
    END IF;
    RETURN p;
END
$$;

-- The role of the current policy, or a refusal.
CREATE OR REPLACE FUNCTION pim.role(policy jsonb, role_name text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    r jsonb := policy -> 'roles' -> role_name;
BEGIN
    IF r IS NULL THEN
        PERFORM pim.refuse('PM001', format('there is no role %s in the fleet''s policy', quote_literal(role_name)));
    END IF;
    RETURN r;
END
$$;

-- Whether `who` (with `groups`, as the host resolved them) is named by the role's list:
-- users under `users_key`, groups under `groups_key`.
CREATE OR REPLACE FUNCTION pim.named(r jsonb, users_key text, groups_key text, who text, groups text[])
RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pim, pg_catalog, pg_temp
AS $$
    SELECT coalesce(r -> users_key, '[]') ? who
        OR EXISTS (SELECT FROM jsonb_array_elements_text(coalesce(r -> groups_key, '[]')) g
                   WHERE g = ANY (groups))
$$;

CREATE OR REPLACE FUNCTION pim.in_scope(scope text[], only_host text, h pim.hosts) RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pim, pg_catalog, pg_temp
AS $$
    SELECT (only_host IS NULL OR only_host = h.name)
        AND (cardinality(scope) = 0
             OR h.name = ANY (scope)
             OR EXISTS (SELECT FROM unnest(h.tags) t WHERE 'tag:' || t = ANY (scope)))
$$;

CREATE OR REPLACE FUNCTION pim.scope_of(r jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pim, pg_catalog, pg_temp
AS $$ SELECT coalesce(array(SELECT jsonb_array_elements_text(r -> 'hosts')), '{}') $$;

-- A record of the authority's own. Its action is a name of pim_common::vocab::AuditAction
-- (kebab-case), the vocabulary of the records hosts ship: one vocabulary in pim.audit.
CREATE OR REPLACE FUNCTION pim.audit(host text, actor text, action text, who text, role text,
    outcome text, detail text, reason text DEFAULT '', ticket text DEFAULT '') RETURNS void
LANGUAGE sql SET search_path = pim, pg_catalog, pg_temp
AS $$
    INSERT INTO pim.audit (at, host, actor, action, "user", role, outcome, reason, ticket, detail)
    VALUES (pim.now_s(), host, actor, action, who, role, outcome, reason, ticket, detail)
$$;

-- Audits a host's refused call, at most once a minute per host and action: the refusal is
-- worth a record, a host repeating it must not fill the audit.
CREATE OR REPLACE FUNCTION pim.audit_refusal(host text, actor text, action text, who text,
    role text, detail text) RETURNS void
LANGUAGE plpgsql SET search_path = pim, pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pim.audit a WHERE a.host = audit_refusal.host AND a.local_id IS NULL
                   AND a.action = audit_refusal.action AND a.outcome = 'refused'
                   AND a.at > pim.now_s() - 60) THEN
        PERFORM pim.audit(host, actor, action, who, role, 'refused', detail);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION pim.wake() RETURNS void
LANGUAGE sql SET search_path = pim, pg_catalog, pg_temp
AS $$ SELECT pg_notify('pim_wake', '') $$;

-- RFC 6238 TOTP (HMAC-SHA-1, 6 digits) of `step`, as daemon/src/mfa.rs computes it.
CREATE OR REPLACE FUNCTION pim.totp(secret bytea, step bigint) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    mac bytea := pim_crypto.hmac(int8send(step), secret, 'sha1');
    off integer := get_byte(mac, 19) & 15;
    bin bigint;
BEGIN
    bin := ((get_byte(mac, off) & 127)::bigint << 24)
         | (get_byte(mac, off + 1)::bigint << 16)
         | (get_byte(mac, off + 2)::bigint << 8)
         | get_byte(mac, off + 3)::bigint;
    RETURN lpad((bin % 1000000)::text, 6, '0');
END
$$;

-- The [mfa] lockout rules of the current policy.
CREATE OR REPLACE FUNCTION pim.lockout_rules(OUT max_failures integer, OUT window_secs bigint,
    OUT lockout_secs bigint)
LANGUAGE sql STABLE SET search_path = pim, pg_catalog, pg_temp
AS $$
    SELECT coalesce((l ->> 'max_failures')::integer, 5),
           coalesce((l ->> 'failure_window_secs')::bigint, 900),
           coalesce((l ->> 'lockout_secs')::bigint, 900)
    FROM (SELECT coalesce((pim.current_policy()).normalized -> 'mfa', '{}') AS l) x
$$;

CREATE OR REPLACE FUNCTION pim.code_hash(who text, code text) RETURNS bytea
LANGUAGE sql IMMUTABLE SET search_path = pim, pg_catalog, pg_temp
AS $$ SELECT pim_crypto.digest(who || ':' || code, 'sha256') $$;

-- How long a started enrolment waits for its confirmation (on the host that started it).
CREATE OR REPLACE FUNCTION pim.enrolment_ttl_secs() RETURNS bigint
LANGUAGE sql IMMUTABLE SET search_path = pim, pg_catalog, pg_temp
AS $$ SELECT 600::bigint $$;

-- How long an offered code stays spendable (a TOTP code is good for at most 90 s).
CREATE OR REPLACE FUNCTION pim.attempt_ttl_secs() RETURNS bigint
LANGUAGE sql IMMUTABLE SET search_path = pim, pg_catalog, pg_temp
AS $$ SELECT 120::bigint $$;

-- How many hosts at their own limit lock a user out on every host.
CREATE OR REPLACE FUNCTION pim.fleet_lockout_factor() RETURNS integer
LANGUAGE sql IMMUTABLE SET search_path = pim, pg_catalog, pg_temp
AS $$ SELECT 10 $$;

-- `who`'s wrong codes from `host`, locked for update (created when there are none yet).
-- The caller holds `who`'s pim.mfa row lock, which orders the counting.
CREATE OR REPLACE FUNCTION pim.host_failures(who text, host text) RETURNS pim.mfa_host_failures
LANGUAGE plpgsql SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    f pim.mfa_host_failures;
BEGIN
    INSERT INTO pim.mfa_host_failures ("user", host) VALUES (who, host) ON CONFLICT DO NOTHING;
    SELECT * INTO f FROM pim.mfa_host_failures x WHERE x."user" = who AND x.host = host_failures.host
        FOR UPDATE;
    RETURN f;
END
$$;

-- The refusal of a code while `who` is locked out on every host (`m`) or on `host` (`f`),
-- else NULL.
CREATE OR REPLACE FUNCTION pim.locked_refusal(m pim.mfa, f pim.mfa_host_failures) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    now_s bigint := pim.now_s();
BEGIN
    IF now_s < m.locked_until THEN
        RETURN pim.refusal('PM006', format('too many wrong codes on the fleet''s hosts; the MFA of %s is locked '
            'on every host for %s more seconds', m."user", m.locked_until - now_s));
    END IF;
    IF now_s < f.locked_until THEN
        RETURN pim.refusal('PM006', format('too many wrong codes on host %s; the MFA of %s is locked on that '
            'host for %s more seconds', f.host, m."user", f.locked_until - now_s));
    END IF;
    RETURN NULL;
END
$$;

-- Spends `code` for `who`: NULL when it is a fresh TOTP code (its step is recorded), else
-- the refusal to return. The code must have been offered (pim_api.offer_code) by an
-- earlier, committed transaction, which counted it as a wrong code up front: a caller that
-- rolls this call back (BEGIN/ROLLBACK, a DO block, a failing statement pipelined after
-- it) keeps the failure. A fresh code undoes the offering host's count. The user's row is locked first,
-- so the same code sent at once from many hosts is accepted once. `need_confirmed`:
-- whether the enrolment must be confirmed already (false while confirming it).
CREATE OR REPLACE FUNCTION pim.spend_code(who text, code text, host text, need_confirmed boolean)
RETURNS jsonb
LANGUAGE plpgsql SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    m pim.mfa;
    rules record;
    now_s bigint := pim.now_s();
    now_step bigint := now_s / 30;
    fresh bigint;
    given text := btrim(coalesce(code, ''));
    attempt pim.code_attempts;
    f pim.mfa_host_failures;
    locked jsonb;
BEGIN
    SELECT * INTO rules FROM pim.lockout_rules();
    SELECT * INTO m FROM pim.mfa WHERE "user" = who FOR UPDATE;
    IF NOT FOUND OR m.confirmed <> need_confirmed THEN
        IF need_confirmed THEN
            RETURN pim.refusal('PM004', format('%s has no TOTP enrolment', who));
        END IF;
        RETURN pim.refusal('PM004', format('%s has no enrolment waiting for confirmation', who));
    END IF;
    f := pim.host_failures(who, host);
    locked := pim.locked_refusal(m, f);
    IF locked IS NOT NULL THEN
        RETURN locked;
    END IF;
    IF given = '' THEN
        RETURN pim.refusal('PM003', 'a TOTP code is required');
    END IF;
    SELECT * INTO attempt FROM pim.code_attempts a
        WHERE a."user" = who AND a.code_hash = pim.code_hash(who, given) AND NOT a.used
          AND a.xact <> pg_current_xact_id() AND a.created_at >= now_s - pim.attempt_ttl_secs()
        ORDER BY a.id LIMIT 1 FOR UPDATE;
    IF NOT FOUND AND EXISTS (SELECT FROM pim.code_attempts a WHERE a."user" = who
                             AND a.code_hash = pim.code_hash(who, given) AND a.used) THEN
        RETURN pim.refusal('PM005', 'the code was already used');
    END IF;
    IF NOT FOUND THEN
        RETURN pim.refusal('PM003', format('the code was not offered first: call pim_api.offer_code(%s, code) '
            'in a transaction of its own, then this', quote_literal(who)));
    END IF;
    UPDATE pim.code_attempts SET used = true WHERE id = attempt.id;
    -- The code counted on the host that offered it (hosts racing with one code offer it once).
    IF attempt.host <> host THEN
        f := pim.host_failures(who, attempt.host);
    END IF;
    IF given ~ '^[0-9]{6}$' THEN
        -- One step of skew either way; the latest fresh match wins, as in mfa::verify_totp.
        FOR skew IN -1 .. 1 LOOP
            IF pim.totp(m.secret, now_step + skew) = given
                AND (m.last_step IS NULL OR now_step + skew > m.last_step) THEN
                fresh := now_step + skew;
            END IF;
        END LOOP;
    END IF;
    IF fresh IS NOT NULL THEN
        -- The user proved themselves on the host that offered the code: its wrong codes (and
        -- its share of the fleet-wide count) are forgiven; other hosts' stand.
        UPDATE pim.mfa SET last_step = fresh,
            failures = CASE WHEN f.fleet_window = m.window_start
                            THEN greatest(m.failures - f.fleet_share, 0) ELSE m.failures END
            WHERE "user" = who;
        UPDATE pim.mfa_host_failures x SET failures = 0, window_start = 0, locked_until = 0, fleet_share = 0
            WHERE x."user" = who AND x.host = f.host;
        RETURN NULL;
    END IF;
    -- The failure was counted when the code was offered.
    PERFORM pim.audit(host, who, 'mfa-failure', who, '', 'refused',
        format('wrong or reused code (%s of %s on host %s, %s of %s on every host)', f.failures,
            rules.max_failures, f.host, m.failures, rules.max_failures * pim.fleet_lockout_factor()));
    IF m.failures >= rules.max_failures * pim.fleet_lockout_factor() THEN
        PERFORM pim.lock_out(who, NULL, host, rules.lockout_secs);
        RETURN pim.refusal('PM006', format('wrong code; too many wrong codes on the fleet''s hosts, the MFA of %s '
            'is locked on every host for %s seconds', who, rules.lockout_secs));
    END IF;
    IF f.failures >= rules.max_failures THEN
        PERFORM pim.lock_out(who, f.host, host, rules.lockout_secs);
        RETURN pim.refusal('PM006', format('wrong code; too many wrong codes on host %s, the MFA of %s is locked '
            'on that host for %s seconds', f.host, who, rules.lockout_secs));
    END IF;
    RETURN pim.refusal('PM005', format('the code is wrong or was already used; %s attempts left before a lockout',
        rules.max_failures - f.failures));
END
$$;

-- Locks `who` out on host `on_host`, or on every host when it is NULL; `host` made the call.
DROP FUNCTION IF EXISTS pim.lock_out(text, text, bigint);
CREATE OR REPLACE FUNCTION pim.lock_out(who text, on_host text, host text, lockout_secs bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pim, pg_catalog, pg_temp
AS $$
BEGIN
    IF on_host IS NULL THEN
        UPDATE pim.mfa SET failures = 0, window_start = 0, locked_until = pim.now_s() + lockout_secs
            WHERE "user" = who;
    ELSE
        UPDATE pim.mfa_host_failures x SET failures = 0, locked_until = pim.now_s() + lockout_secs
            WHERE x."user" = who AND x.host = on_host;
    END IF;
    PERFORM pim.audit(host, who, 'mfa-lockout', who, '', 'refused',
        CASE WHEN on_host IS NULL THEN format('locked on every host for %s seconds', lockout_secs)
             ELSE format('locked on host %s for %s seconds', on_host, lockout_secs) END);
END
$$;

-- NULL when `actor` is an administrator of the current policy (by name: the database does
-- not take a host's word on group membership for this) and `code` is their fresh code.
CREATE OR REPLACE FUNCTION pim.admin_proof(actor text, code text, host text) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pim, pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pim.check_name('the administrator', actor);
    PERFORM pim.check_text('the code', code, 64);
    IF NOT coalesce((pim.current_policy()).normalized -> 'admins', '[]') ? actor THEN
        PERFORM pim.refuse('PM007', format('%s is not an administrator of the fleet', actor));
    END IF;
    RETURN pim.spend_code(actor, code, host, true);
END
$$;

CREATE OR REPLACE FUNCTION pim.grant_json(g pim.grants) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pim, pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('id', g.id, 'user', g."user", 'role', g.role, 'group', g."group",
        'started_at', g.started_at, 'ends_at', g.ends_at, 'reason', g.reason,
        'ticket', g.ticket, 'request_id', g.request_id, 'only_host', g.only_host)
$$;

CREATE OR REPLACE FUNCTION pim.request_json(q pim.requests) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pim, pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('id', q.id, 'user', q."user", 'role', q.role,
        'duration_secs', q.duration_secs, 'reason', q.reason, 'ticket', q.ticket,
        'created_at', q.created_at, 'expires_at', q.expires_at,
        'approvals', (SELECT count(*) FROM pim.approvals a WHERE a.request_id = q.id),
        'approved_by', coalesce((SELECT jsonb_agg(a.approver ORDER BY a.at, a.approver)
            FROM pim.approvals a WHERE a.request_id = q.id), '[]'),
        'approvals_required', q.approvals_required, 'state', q.state, 'only_host', q.only_host)
$$;

-- Starts the grant of request `q` (or of a direct activation when q.id is NULL).
CREATE OR REPLACE FUNCTION pim.start_grant(q pim.requests, r jsonb, host text) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    g pim.grants;
    now_s bigint := pim.now_s();
BEGIN
    INSERT INTO pim.grants ("user", role, "group", scope, only_host, started_at, ends_at, reason,
        ticket, request_id, granted_on)
    VALUES (q."user", q.role, r ->> 'group', pim.scope_of(r), q.only_host, now_s,
        now_s + q.duration_secs, q.reason, q.ticket, q.id, host)
    RETURNING * INTO g;
    PERFORM pim.audit(host, q."user", 'activate', q."user", q.role, 'success',
        format('grant %s for %s s%s%s', g.id, q.duration_secs,
            CASE WHEN q.only_host IS NULL THEN '' ELSE ' on host ' || q.only_host END,
            CASE WHEN q.id IS NULL THEN '' ELSE ', request ' || q.id END),
        q.reason, q.ticket);
    PERFORM pim.wake();
    RETURN jsonb_build_object('granted', pim.grant_json(g));
END
$$;

-- Stores a policy version; used by setup (the first one) and pim_api.push_policy.
CREATE OR REPLACE FUNCTION pim.store_policy(policy_text text, normalized jsonb, pushed_by text, host text)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    v bigint;
    role_name text;
    r jsonb;
    wrong text;
BEGIN
    IF policy_text IS NULL OR octet_length(policy_text) > 1048576 THEN
        PERFORM pim.refuse('PM002', 'the policy text is missing or longer than 1 MiB');
    END IF;
    IF jsonb_typeof(normalized -> 'roles') IS DISTINCT FROM 'object'
        OR jsonb_typeof(normalized -> 'admins') IS DISTINCT FROM 'array' THEN
        PERFORM pim.refuse('PM002', 'the normalized policy needs "roles" (an object) and "admins" (a list)');
    END IF;
    IF jsonb_array_length(normalized -> 'admins') = 0 THEN
        PERFORM pim.refuse('PM002', 'the policy names no administrator by user name: nobody could push the next one');
    END IF;
    -- Every key the functions read, with its type: a missing one must not read as NULL
    -- (NULL require_mfa would skip the code).
    FOR role_name, r IN SELECT * FROM jsonb_each(normalized -> 'roles') LOOP
        SELECT string_agg(k, ', ') INTO wrong FROM (VALUES
            ('group', 'string'), ('hosts', 'array'), ('eligible_users', 'array'),
            ('eligible_groups', 'array'), ('approver_users', 'array'),
            ('approver_groups', 'array'), ('require_approval', 'boolean'),
            ('approvals_required', 'number'), ('max_duration_secs', 'number'),
            ('require_mfa', 'boolean'), ('request_ttl_secs', 'number')) AS want (k, t)
        WHERE jsonb_typeof(r -> k) IS DISTINCT FROM t
           OR (t = 'number' AND (r ->> k)::numeric < 1);
        IF wrong IS NOT NULL THEN
            PERFORM pim.refuse('PM002', format('the normalized policy''s role %s lacks or mistypes %s',
                role_name, wrong));
        END IF;
    END LOOP;
    SELECT string_agg(k, ', ') INTO wrong
        FROM unnest(ARRAY['max_failures', 'failure_window_secs', 'lockout_secs']) AS k
        WHERE normalized -> 'mfa' ? k AND (jsonb_typeof(normalized -> 'mfa' -> k) <> 'number'
                                           OR (normalized -> 'mfa' ->> k)::numeric < 1);
    IF wrong IS NOT NULL THEN
        PERFORM pim.refuse('PM002', format('the normalized policy''s mfa mistypes %s', wrong));
    END IF;
    INSERT INTO pim.policies (text, normalized, pushed_by, pushed_at)
    VALUES (policy_text, normalized, pushed_by, pim.now_s()) RETURNING version INTO v;
    PERFORM pim.audit(host, pushed_by, 'admin-policy-push', '', '', 'success', format('policy version %s', v));
    PERFORM pim.wake();
    RETURN v;
END
$$;

-- Adds host `host_name` with its login pim_host_<name>; returns the login's password
-- (scram-sha-256 on the server). Adding an existing host is refused: its password stays.
CREATE OR REPLACE FUNCTION pim.create_host(host_name text, tags text[], actor text, host text)
RETURNS text
LANGUAGE plpgsql SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    login text;
    password text := encode(pim_crypto.gen_random_bytes(24), 'hex');
BEGIN
    PERFORM pim.check_name('the host', host_name);
    IF host_name !~ '^[a-z0-9][a-z0-9.-]{0,53}$' THEN
        PERFORM pim.refuse('PM002', format('the host name %s must be lower-case letters, digits, . and -, at most 54',
            quote_literal(host_name)));
    END IF;
    PERFORM pim.check_names('a tag', tags);
    -- web7.eu and web7-eu share a login name: the second is refused below.
    login := 'pim_host_' || translate(host_name, '.-', '__');
    IF EXISTS (SELECT FROM pim.hosts WHERE name = host_name) THEN
        PERFORM pim.refuse('PM009', format('the host %s is already in the fleet', host_name));
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = login) THEN
        PERFORM pim.refuse('PM009', format('a database role %s exists already', login));
    END IF;
    EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L IN ROLE pim_host', login, password);
    PERFORM pim.limit_host_login(login);
    INSERT INTO pim.hosts (name, login, tags, added_at) VALUES (host_name, login, tags, pim.now_s());
    PERFORM pim.audit(host, actor, 'admin-host-add', '', '', 'success',
        format('host %s (tags %s)', host_name, array_to_string(tags, ',')));
    RETURN password;
END
$$;

-- ---------------------------------------------------------------------------------------
-- Limits on what one host can take from the authority as a whole (review finding 7). A
-- host's login may hold few connections, and its sessions carry timeouts; but a host's
-- root can SET those in its own session, so the database itself also ends, on any call,
-- the host sessions stuck in a transaction (whose locks would hold every other host up).

-- Connections one host login may hold: pimd holds three (calls, the sync's calls, LISTEN),
-- and as many again while the server has not yet noticed a dead link's (see the keepalives
-- below).
CREATE OR REPLACE FUNCTION pim.host_connection_limit() RETURNS integer
LANGUAGE sql IMMUTABLE SET search_path = pim, pg_catalog, pg_temp
AS $$ SELECT 6 $$;

-- The longest a host's transaction may last (pimd's are one call each, within its 10 s
-- statement_timeout) before any call ends its session.
CREATE OR REPLACE FUNCTION pim.host_transaction_max_secs() RETURNS integer
LANGUAGE sql IMMUTABLE SET search_path = pim, pg_catalog, pg_temp
AS $$ SELECT 30 $$;

-- The most JSON one pim_api.ship_audit call takes (a record is at most about 11 kB).
CREATE OR REPLACE FUNCTION pim.ship_max_bytes() RETURNS integer
LANGUAGE sql IMMUTABLE SET search_path = pim, pg_catalog, pg_temp
AS $$ SELECT 1048576 $$;

-- `login`'s connection limit and session defaults. pim_owner is made a member of it so
-- that pim.cut_stuck_hosts sees and ends its sessions (the login has nothing pim_owner
-- lacks: EXECUTE on pim_api, which pim_owner owns).
CREATE OR REPLACE FUNCTION pim.limit_host_login(login text) RETURNS void
LANGUAGE plpgsql SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    setting text[];
BEGIN
    EXECUTE format('ALTER ROLE %I CONNECTION LIMIT %s', login, pim.host_connection_limit());
    FOREACH setting SLICE 1 IN ARRAY ARRAY[
        ['statement_timeout', '10s'],
        ['lock_timeout', '5s'],
        ['idle_in_transaction_session_timeout', '10s'],
        -- A host gone from the network frees its connections in about 20 s.
        ['tcp_keepalives_idle', '10'],
        ['tcp_keepalives_interval', '3'],
        ['tcp_keepalives_count', '3'],
        ['tcp_user_timeout', '15000']] LOOP
        EXECUTE format('ALTER ROLE %I SET %I = %L', login, setting[1], setting[2]);
    END LOOP;
    -- WITH ADMIN OPTION: from PostgreSQL 16 on, pim_owner may alter (disable, enable) only
    -- the roles it administers, and setup (a superuser) creates the first hosts' logins.
    IF NOT pg_has_role('pim_owner', login, 'USAGE')
       OR NOT EXISTS (SELECT FROM pg_auth_members m
                      WHERE m.roleid = (SELECT oid FROM pg_roles WHERE rolname = login)
                        AND m.member = (SELECT oid FROM pg_roles WHERE rolname = 'pim_owner')
                        AND m.admin_option) THEN
        -- From PostgreSQL 16 on a grant says whether it passes the role's privileges on;
        -- ending a login's sessions needs them (pim_owner holds no pg_signal_backend).
        IF current_setting('server_version_num')::integer >= 160000 THEN
            EXECUTE format('GRANT %I TO pim_owner WITH ADMIN TRUE, INHERIT TRUE', login);
        ELSE
            EXECUTE format('GRANT %I TO pim_owner WITH ADMIN OPTION', login);
        END IF;
    END IF;
END
$$;

-- When did a call last look for stuck host sessions (epoch seconds)? A sequence: no host
-- can hold it locked, and a look is neither undone by a rollback nor waits for one.
CREATE SEQUENCE IF NOT EXISTS pim.stuck_hosts_looked_at;

-- How long a host session may sit idle blocked writing to its host (ClientWrite: a LISTEN
-- whose notifications the host does not read) before it is ended. pimd's listener reads
-- them as they come and runs a query every 5 s, so its session is never idle that long: a
-- flood of NOTIFYs (any login may send them) keeps it busy reading, not cut off.
CREATE OR REPLACE FUNCTION pim.host_write_stuck_secs() RETURNS integer
LANGUAGE sql IMMUTABLE SET search_path = pim, pg_catalog, pg_temp
AS $$ SELECT 20 $$;

-- Ends the host sessions whose transaction has lasted longer than
-- pim.host_transaction_max_secs() (a long statement holding row locks), those idle in a
-- transaction for 2 s (pimd never is: each call is one statement; a host holding locks
-- between statements, transaction after transaction, would keep others waiting on them),
-- and those blocked writing to a host that does not read them (a LISTEN that holds the
-- NOTIFY queue's tail) once they have been idle for pim.host_write_stuck_secs(), or at once
-- when the NOTIFY queue is half full (every commit that notifies fails when it is full); at
-- most one look every 5 s, whoever calls.
CREATE OR REPLACE FUNCTION pim.cut_stuck_hosts() RETURNS void
LANGUAGE plpgsql SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    now_s bigint := floor(extract(epoch FROM clock_timestamp()))::bigint;
    stuck record;
BEGIN
    IF (SELECT last_value FROM pim.stuck_hosts_looked_at) > now_s - 5 THEN
        RETURN;
    END IF;
    PERFORM setval('pim.stuck_hosts_looked_at', now_s);
    FOR stuck IN SELECT a.pid, h.name, a.state, a.wait_event
        FROM pg_stat_activity a JOIN pim.hosts h ON h.login = a.usename
        WHERE a.pid <> pg_backend_pid()
          AND (a.xact_start < clock_timestamp() - make_interval(secs => pim.host_transaction_max_secs())
               OR (a.state IN ('idle in transaction', 'idle in transaction (aborted)')
                   AND a.state_change < clock_timestamp() - interval '2 seconds')
               OR (a.state = 'idle' AND a.wait_event = 'ClientWrite'
                   AND (a.state_change < clock_timestamp() - make_interval(secs => pim.host_write_stuck_secs())
                        OR pg_notification_queue_usage() >= 0.5))) LOOP
        -- A session pim_owner may not end (a host login made a superuser by hand) must not
        -- make every host's calls fail: logged, and the call goes on.
        BEGIN
            IF pg_terminate_backend(stuck.pid) THEN
                RAISE LOG 'pim: ended a session of host % stuck in a transaction or a write (%, %)',
                    stuck.name, stuck.state, coalesce(stuck.wait_event, '-');
            END IF;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE LOG 'pim: cannot end the stuck session % of host %: %', stuck.pid, stuck.name,
                SQLERRM;
        END;
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------------------
-- pim_api: what a host may call. Each finds its host through pim.caller().

CREATE OR REPLACE FUNCTION pim_api.snapshot(host_now_ms bigint) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
    db_now_ms bigint := floor(extract(epoch FROM now()) * 1000)::bigint;
BEGIN
    UPDATE pim.hosts SET last_seen = pim.now_s(), last_sync = pim.now_s(),
        skew_ms = host_now_ms - db_now_ms WHERE name = h.name;
    RETURN jsonb_build_object('host', h.name, 'db_now', pim.now_s(),
        'policy_version', (SELECT coalesce(max(version), 0) FROM pim.policies),
        'grants', coalesce((SELECT jsonb_agg(pim.grant_json(g) ORDER BY g.id) FROM pim.grants g
            WHERE g.ended_at IS NULL AND g.ends_at > pim.now_s()
              AND pim.in_scope(g.scope, g.only_host, h)), '[]'));
END
$$;

CREATE OR REPLACE FUNCTION pim_api.policy(wanted bigint) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
    p pim.policies;
BEGIN
    SELECT * INTO p FROM pim.policies WHERE version = wanted;
    IF NOT FOUND THEN
        PERFORM pim.refuse('PM008', format('there is no policy version %s', wanted));
    END IF;
    RETURN jsonb_build_object('version', p.version, 'text', p.text);
END
$$;

-- Offers `code` for `who`, to be checked by the next call that needs it (activate, approve,
-- deny, confirm_enrolment, or an administrator's call). It must be its own transaction: it
-- counts the code as a wrong one now (undone when the code turns out fresh), and the
-- checking call accepts only a code offered by an earlier transaction. Offering a code
-- already waiting counts nothing more (hosts racing with the same code).
CREATE OR REPLACE FUNCTION pim_api.offer_code(who text, code text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
    m pim.mfa;
    f pim.mfa_host_failures;
    locked jsonb;
    rules record;
    now_s bigint := pim.now_s();
    given text;
BEGIN
    PERFORM pim.check_name('the user', who);
    PERFORM pim.check_text('the code', code, 64);
    SELECT * INTO rules FROM pim.lockout_rules();
    given := btrim(code);
    IF given = '' THEN
        RETURN pim.refusal('PM003', 'a TOTP code is required');
    END IF;
    SELECT * INTO m FROM pim.mfa WHERE "user" = who FOR UPDATE;
    IF NOT FOUND THEN
        RETURN pim.refusal('PM004', format('%s has no TOTP enrolment', who));
    END IF;
    f := pim.host_failures(who, h.name);
    locked := pim.locked_refusal(m, f);
    IF locked IS NOT NULL THEN
        RETURN locked;
    END IF;
    DELETE FROM pim.code_attempts a WHERE a."user" = who AND a.created_at < now_s - pim.attempt_ttl_secs();
    IF EXISTS (SELECT FROM pim.code_attempts a WHERE a."user" = who
               AND a.code_hash = pim.code_hash(who, given) AND NOT a.used) THEN
        RETURN '{}';
    END IF;
    -- This host's window, the fleet's window, and this host's share in the fleet's.
    IF f.failures = 0 OR now_s >= f.window_start + rules.window_secs THEN
        f.failures := 0;
        f.window_start := now_s;
    END IF;
    IF m.failures = 0 OR now_s >= m.window_start + rules.window_secs THEN
        m.failures := 0;
        m.window_start := now_s;
    END IF;
    IF f.fleet_window <> m.window_start THEN
        f.fleet_share := 0;
        f.fleet_window := m.window_start;
    END IF;
    -- The wrong codes that reached a limit were checked by calls rolled back.
    IF m.failures >= rules.max_failures * pim.fleet_lockout_factor() THEN
        PERFORM pim.lock_out(who, NULL, h.name, rules.lockout_secs);
        RETURN pim.refusal('PM006', format('too many wrong codes on the fleet''s hosts, the MFA of %s is locked '
            'on every host for %s seconds', who, rules.lockout_secs));
    END IF;
    IF f.failures >= rules.max_failures THEN
        PERFORM pim.lock_out(who, h.name, h.name, rules.lockout_secs);
        RETURN pim.refusal('PM006', format('too many wrong codes on host %s, the MFA of %s is locked on that '
            'host for %s seconds', h.name, who, rules.lockout_secs));
    END IF;
    IF f.fleet_share < rules.max_failures THEN
        f.fleet_share := f.fleet_share + 1;
        m.failures := m.failures + 1;
    END IF;
    UPDATE pim.mfa SET failures = m.failures, window_start = m.window_start WHERE "user" = who;
    UPDATE pim.mfa_host_failures x SET failures = f.failures + 1, window_start = f.window_start,
        fleet_share = f.fleet_share, fleet_window = f.fleet_window
        WHERE x."user" = who AND x.host = h.name;
    INSERT INTO pim.code_attempts ("user", code_hash, xact, host, created_at)
        VALUES (who, pim.code_hash(who, given), pg_current_xact_id(), h.name, now_s);
    RETURN '{}';
END
$$;

-- Issues `who`'s enrolment ticket (replacing any earlier one) and returns it, shown once:
-- 20 base32 characters (100 random bits) in groups of five. Called by pim_api.mfa_ticket
-- after an administrator's proof and by pimd --fleet-setup --enrol-admin (a superuser).
CREATE OR REPLACE FUNCTION pim.issue_enrolment_ticket(who text, actor text, host text) RETURNS text
LANGUAGE plpgsql SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    alphabet constant text := 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
    random bytea := pim_crypto.gen_random_bytes(20);
    ticket text;
    replaced boolean;
    now_s bigint := pim.now_s();
BEGIN
    PERFORM pim.check_name('the user', who);
    PERFORM pim.refuse_enrolled_ticket(who);
    -- 256 is a multiple of 32: each byte's low five bits are uniform.
    SELECT string_agg(substr(alphabet, (get_byte(random, i) & 31) + 1, 1), '' ORDER BY i)
        INTO ticket FROM generate_series(0, 19) AS i;
    replaced := EXISTS (SELECT FROM pim.enrolment_tickets WHERE "user" = who);
    INSERT INTO pim.enrolment_tickets ("user", ticket_hash, issued_by, issued_on, issued_at, expires_at)
    VALUES (who, pim.ticket_hash(who, ticket), actor, host, now_s, now_s + pim.ticket_ttl_secs())
    ON CONFLICT ("user") DO UPDATE SET ticket_hash = excluded.ticket_hash,
        issued_by = excluded.issued_by, issued_on = excluded.issued_on,
        issued_at = excluded.issued_at, expires_at = excluded.expires_at, failures = 0;
    DELETE FROM pim.ticket_attempts WHERE "user" = who;
    PERFORM pim.audit(host, actor, 'admin-mfa-ticket', who, '', 'success',
        format('enrolment ticket issued, good for %s s%s', pim.ticket_ttl_secs(),
            CASE WHEN replaced THEN '; the earlier ticket is void' ELSE '' END));
    RETURN regexp_replace(ticket, '(.{5})(?!$)', '\1-', 'g');
END
$$;

-- A ticket is for a first enrolment (or one after a reset): refused for an enrolled user.
CREATE OR REPLACE FUNCTION pim.refuse_enrolled_ticket(who text) RETURNS void
LANGUAGE plpgsql SET search_path = pim, pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT FROM pim.mfa WHERE "user" = who AND confirmed) THEN
        PERFORM pim.refuse('PM009', format('%s is enrolled already: an enrolment ticket is for a first '
            'enrolment, or one after ''pim admin mfa-reset %s''', who, who));
    END IF;
END
$$;

-- How long an enrolment ticket stays good.
CREATE OR REPLACE FUNCTION pim.ticket_ttl_secs() RETURNS bigint
LANGUAGE sql IMMUTABLE SET search_path = pim, pg_catalog, pg_temp
AS $$ SELECT 86400::bigint $$;

-- A ticket as typed (any case, with or without the dashes and spaces) hashed with its user:
-- a ticket of alice's is no ticket of bob's.
CREATE OR REPLACE FUNCTION pim.ticket_hash(who text, ticket text) RETURNS bytea
LANGUAGE sql IMMUTABLE SET search_path = pim, pg_catalog, pg_temp
AS $$ SELECT pim_crypto.digest('ticket:' || who || ':' || upper(translate(ticket, '- ', '')), 'sha256') $$;

-- The refusal of an enrolment of `who`, enrolled already.
CREATE OR REPLACE FUNCTION pim.already_enrolled(who text) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pim, pg_catalog, pg_temp
AS $$
    SELECT pim.refusal('PM009', format('%s is already enrolled; to enrol a new device, ask an administrator '
        'to run ''pim admin mfa-reset''', who))
$$;

-- The refusal when `who` has no ticket to use.
CREATE OR REPLACE FUNCTION pim.no_ticket(who text) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pim, pg_catalog, pg_temp
AS $$
    SELECT pim.refusal('PM008', format('%s has no enrolment ticket waiting (none was issued, it was used, '
        'it expired, or wrong tickets voided it): ask a fleet administrator for one '
        '(''pim admin mfa-ticket %s'')', who, who))
$$;

-- `who`'s ticket, locked, while it is good; a row of NULLs when there is none.
CREATE OR REPLACE FUNCTION pim.waiting_ticket(who text) RETURNS pim.enrolment_tickets
LANGUAGE plpgsql SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    t pim.enrolment_tickets;
BEGIN
    SELECT * INTO t FROM pim.enrolment_tickets x WHERE x."user" = who AND x.expires_at > pim.now_s()
        FOR UPDATE;
    RETURN t;
END
$$;

-- Voids `who`'s ticket after too many wrong ones; the refusal to return.
CREATE OR REPLACE FUNCTION pim.void_ticket(who text, host text, failures integer) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pim, pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM pim.enrolment_tickets WHERE "user" = who;
    DELETE FROM pim.ticket_attempts WHERE "user" = who;
    PERFORM pim.audit(host, who, 'mfa-ticket-void', who, '', 'refused',
        format('enrolment ticket void after %s wrong tickets', failures));
    RETURN pim.refusal('PM006', format('too many wrong enrolment tickets: the ticket of %s is void; '
        'ask a fleet administrator for a new one (''pim admin mfa-ticket %s'')', who, who));
END
$$;

-- An administrator issues `who`'s enrolment ticket; returns {"ticket": ...}, shown once.
-- With `reset` (a lost device) `who`'s enrolment is removed first, in the same transaction:
-- their old device stops working and the ticket enrols a new one.
CREATE OR REPLACE FUNCTION pim_api.mfa_ticket(actor text, code text, who text, reset boolean)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
    refused jsonb;
BEGIN
    PERFORM pim.check_name('the user', who);
    IF reset IS NULL THEN
        PERFORM pim.refuse('PM002', 'reset is missing');
    END IF;
    IF reset AND actor = who THEN
        PERFORM pim.refuse('PM007', 'an administrator cannot reset their own enrolment: another administrator must');
    END IF;
    IF reset AND NOT EXISTS (SELECT FROM pim.mfa WHERE "user" = who) THEN
        PERFORM pim.refuse('PM008', format('%s has no enrolment to reset', who));
    END IF;
    IF NOT reset THEN
        PERFORM pim.refuse_enrolled_ticket(who);
    END IF;
    refused := pim.admin_proof(actor, code, h.name);
    IF refused IS NOT NULL THEN
        RETURN refused;
    END IF;
    IF reset THEN
        DELETE FROM pim.mfa WHERE "user" = who;
        DELETE FROM pim.code_attempts WHERE "user" = who;
        DELETE FROM pim.mfa_host_failures x WHERE x."user" = who;
        PERFORM pim.audit(h.name, actor, 'admin-mfa-reset', who, '', 'success',
            'enrolment removed; a new enrolment ticket follows');
    END IF;
    RETURN jsonb_build_object('ticket', pim.issue_enrolment_ticket(who, actor, h.name));
END
$$;

-- Offers `ticket` for `who`, to be checked by the pim_api.enrol that follows, in a
-- transaction of its own: as pim_api.offer_code does for codes, it counts the ticket as a
-- wrong one now and tells nothing of whether it is right, so no rollback of enrol undoes
-- the count. Offering a ticket already waiting counts nothing more.
CREATE OR REPLACE FUNCTION pim_api.offer_ticket(who text, ticket text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
    t pim.enrolment_tickets;
    rules record;
    now_s bigint := pim.now_s();
BEGIN
    PERFORM pim.check_name('the user', who);
    PERFORM pim.check_text('the ticket', ticket, 64);
    IF btrim(ticket) = '' THEN
        RETURN pim.refusal('PM003', 'an enrolment ticket is required');
    END IF;
    IF EXISTS (SELECT FROM pim.mfa WHERE "user" = who AND confirmed) THEN
        RETURN pim.already_enrolled(who);
    END IF;
    SELECT * INTO rules FROM pim.lockout_rules();
    t := pim.waiting_ticket(who);
    IF t."user" IS NULL THEN
        RETURN pim.no_ticket(who);
    END IF;
    DELETE FROM pim.ticket_attempts a WHERE a."user" = who AND a.created_at < now_s - pim.attempt_ttl_secs();
    IF EXISTS (SELECT FROM pim.ticket_attempts a WHERE a."user" = who
               AND a.ticket_hash = pim.ticket_hash(who, ticket) AND NOT a.used) THEN
        RETURN '{}';
    END IF;
    IF t.failures >= rules.max_failures THEN
        -- The wrong tickets that reached the limit were checked by enrol calls rolled back.
        RETURN pim.void_ticket(who, h.name, t.failures);
    END IF;
    UPDATE pim.enrolment_tickets SET failures = t.failures + 1 WHERE "user" = who;
    INSERT INTO pim.ticket_attempts ("user", ticket_hash, xact, host, created_at)
        VALUES (who, pim.ticket_hash(who, ticket), pg_current_xact_id(), h.name, now_s);
    RETURN '{}';
END
$$;

-- Starts `who`'s enrolment with `secret` (pending until confirm_enrolment on this host). It
-- takes `who`'s enrolment ticket, offered by pim_api.offer_ticket in an earlier
-- transaction, and uses it up.
CREATE OR REPLACE FUNCTION pim_api.enrol(who text, secret bytea, ticket text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
    t pim.enrolment_tickets;
    attempt pim.ticket_attempts;
    rules record;
BEGIN
    PERFORM pim.check_name('the user', who);
    IF secret IS NULL OR octet_length(secret) NOT BETWEEN 10 AND 64 THEN
        PERFORM pim.refuse('PM002', 'a TOTP secret is 10 to 64 bytes');
    END IF;
    PERFORM pim.check_text('the ticket', coalesce(ticket, ''), 64);
    -- A confirmed enrolment is replaced only after an administrator's reset: otherwise any
    -- host could swap in a secret it knows and then act as the user everywhere.
    IF EXISTS (SELECT FROM pim.mfa WHERE "user" = who AND confirmed) THEN
        RETURN pim.already_enrolled(who);
    END IF;
    IF EXISTS (SELECT FROM pim.mfa WHERE "user" = who AND NOT confirmed
               AND enrolled_on IS DISTINCT FROM h.name
               AND enrolled_at > pim.now_s() - pim.enrolment_ttl_secs()) THEN
        PERFORM pim.refuse('PM009', format('an enrolment of %s started on another host is waiting for '
            'confirmation; try again in %s seconds', who, pim.enrolment_ttl_secs()));
    END IF;
    IF btrim(coalesce(ticket, '')) = '' THEN
        PERFORM pim.refuse('PM007', format('enrolling in the fleet needs the enrolment ticket a fleet '
            'administrator issues for %s (''pim admin mfa-ticket %s''), given with ''pim mfa enroll --ticket -''',
            who, who));
    END IF;
    t := pim.waiting_ticket(who);
    IF t."user" IS NULL THEN
        RETURN pim.no_ticket(who);
    END IF;
    SELECT * INTO attempt FROM pim.ticket_attempts a
        WHERE a."user" = who AND a.ticket_hash = pim.ticket_hash(who, ticket) AND NOT a.used
          AND a.xact <> pg_current_xact_id() AND a.created_at >= pim.now_s() - pim.attempt_ttl_secs()
        ORDER BY a.id LIMIT 1 FOR UPDATE;
    IF NOT FOUND THEN
        RETURN pim.refusal('PM003', format('the ticket was not offered first: call pim_api.offer_ticket(%s, ticket) '
            'in a transaction of its own, then this', quote_literal(who)));
    END IF;
    UPDATE pim.ticket_attempts SET used = true WHERE id = attempt.id;
    IF attempt.ticket_hash <> t.ticket_hash THEN
        -- The failure was counted when the ticket was offered.
        SELECT * INTO rules FROM pim.lockout_rules();
        PERFORM pim.audit(h.name, who, 'mfa-ticket-failure', who, '', 'refused',
            format('wrong enrolment ticket (%s of %s)', t.failures, rules.max_failures));
        IF t.failures >= rules.max_failures THEN
            RETURN pim.void_ticket(who, h.name, t.failures);
        END IF;
        RETURN pim.refusal('PM005', format('the enrolment ticket is wrong; %s attempts left before it is void',
            rules.max_failures - t.failures));
    END IF;
    DELETE FROM pim.enrolment_tickets WHERE "user" = who;
    DELETE FROM pim.ticket_attempts WHERE "user" = who;
    -- Only a pending enrolment is replaced: one confirmed since the check above (a race
    -- with confirm_enrolment) keeps the secret its code confirmed.
    INSERT INTO pim.mfa ("user", secret, enrolled_at, enrolled_on) VALUES (who, secret, pim.now_s(), h.name)
    ON CONFLICT ("user") DO UPDATE SET secret = excluded.secret, last_step = NULL,
        enrolled_at = excluded.enrolled_at, enrolled_on = excluded.enrolled_on
        WHERE NOT pim.mfa.confirmed;
    IF NOT FOUND THEN
        PERFORM pim.refuse('PM009', format('%s has just confirmed an enrolment; an administrator resets it first '
            '(pim admin mfa-ticket %s --reset)', who, who));
    END IF;
    PERFORM pim.audit(h.name, who, 'mfa-enroll', who, '', 'pending',
        format('enrolment started with the ticket %s issued on %s', t.issued_by, t.issued_on));
    RETURN '{}';
END
$$;
-- Before enrolment tickets, enrol took no ticket: a database set up then loses that door.
DROP FUNCTION IF EXISTS pim_api.enrol(text, bytea);
DROP FUNCTION IF EXISTS pim_api.mfa_ticket(text, text, text);

CREATE OR REPLACE FUNCTION pim_api.confirm_enrolment(who text, code text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
    refused jsonb;
BEGIN
    PERFORM pim.check_name('the user', who);
    PERFORM pim.check_text('the code', code, 64);
    IF NOT EXISTS (SELECT FROM pim.mfa WHERE "user" = who AND NOT confirmed AND enrolled_on = h.name
                   AND enrolled_at > pim.now_s() - pim.enrolment_ttl_secs()) THEN
        PERFORM pim.refuse('PM004', format('%s has no enrolment started on this host in the last %s seconds '
            'waiting for confirmation', who, pim.enrolment_ttl_secs()));
    END IF;
    refused := pim.spend_code(who, code, h.name, false);
    IF refused IS NOT NULL THEN
        RETURN refused;
    END IF;
    UPDATE pim.mfa SET confirmed = true WHERE "user" = who;
    PERFORM pim.audit(h.name, who, 'mfa-confirm', who, '', 'success', 'enrolment confirmed');
    RETURN '{}';
END
$$;

-- An administrator removes `who`'s enrolment (a lost device): the user enrols again.
CREATE OR REPLACE FUNCTION pim_api.mfa_reset(actor text, code text, who text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
    refused jsonb;
BEGIN
    PERFORM pim.check_name('the user', who);
    IF NOT EXISTS (SELECT FROM pim.mfa WHERE "user" = who) THEN
        PERFORM pim.refuse('PM008', format('%s has no enrolment', who));
    END IF;
    IF actor = who THEN
        PERFORM pim.refuse('PM007', 'an administrator cannot reset their own enrolment: another administrator must');
    END IF;
    refused := pim.admin_proof(actor, code, h.name);
    IF refused IS NOT NULL THEN
        RETURN refused;
    END IF;
    -- As mfa_ticket's reset, without the new ticket: nothing of the old device stays usable.
    DELETE FROM pim.mfa WHERE "user" = who;
    DELETE FROM pim.code_attempts WHERE "user" = who;
    DELETE FROM pim.enrolment_tickets WHERE "user" = who;
    DELETE FROM pim.ticket_attempts WHERE "user" = who;
    DELETE FROM pim.mfa_host_failures x WHERE x."user" = who;
    PERFORM pim.audit(h.name, actor, 'admin-mfa-reset', who, '', 'success', 'enrolment removed');
    RETURN '{}';
END
$$;

CREATE OR REPLACE FUNCTION pim_api.mfa_enrolled(who text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
BEGIN
    PERFORM pim.check_name('the user', who);
    RETURN EXISTS (SELECT FROM pim.mfa WHERE "user" = who AND confirmed);
END
$$;

CREATE OR REPLACE FUNCTION pim_api.activate(who text, groups text[], role_name text,
    duration_secs bigint, reason text, ticket text, code text, only_host text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
    r jsonb;
    q pim.requests;
    target pim.hosts;
    refused jsonb;
    now_s bigint := pim.now_s();
BEGIN
    PERFORM pim.check_name('the user', who);
    PERFORM pim.check_names('a group', groups);
    PERFORM pim.check_name('the role', role_name);
    PERFORM pim.check_text('the reason', reason, 1024);
    PERFORM pim.check_text('the ticket', ticket, 256);
    PERFORM pim.check_text('the code', code, 64);
    r := pim.role((pim.current_policy()).normalized, role_name);
    IF NOT pim.named(r, 'eligible_users', 'eligible_groups', who, groups) THEN
        PERFORM pim.refuse('PM001', format('%s is not eligible for the role %s', who, role_name));
    END IF;
    IF duration_secs IS NULL OR duration_secs < 1 OR duration_secs > (r ->> 'max_duration_secs')::bigint THEN
        PERFORM pim.refuse('PM002', format('the role %s grants 1 to %s seconds', role_name, r ->> 'max_duration_secs'));
    END IF;
    -- Eligible through groups only: the calling host alone vouches for them, so the grant is
    -- for that host alone (another host's root could not otherwise claim a group for a user
    -- and have them granted everywhere).
    IF NOT pim.named(r, 'eligible_users', 'eligible_groups', who, '{}') THEN
        IF only_host IS NOT NULL AND only_host <> h.name THEN
            PERFORM pim.refuse('PM001', format('%s is eligible for the role %s through a group that only host %s '
                'vouches for: the grant can be for that host only, not %s', who, role_name, h.name,
                quote_literal(only_host)));
        END IF;
        only_host := h.name;
    END IF;
    IF only_host IS NOT NULL THEN
        SELECT * INTO target FROM pim.hosts WHERE name = only_host;
        IF NOT FOUND THEN
            PERFORM pim.refuse('PM008', format('there is no host %s in the fleet', quote_literal(only_host)));
        END IF;
        IF NOT pim.in_scope(pim.scope_of(r), NULL, target) THEN
            PERFORM pim.refuse('PM002', format('the role %s does not apply on host %s', role_name, only_host));
        END IF;
    END IF;
    IF EXISTS (SELECT FROM pim.grants g WHERE g."user" = who AND g.role = role_name
               AND g.ended_at IS NULL AND g.ends_at > now_s) THEN
        PERFORM pim.refuse('PM009', format('%s already holds a live grant of %s', who, role_name));
    END IF;
    IF coalesce((r ->> 'require_mfa')::boolean, true) THEN
        refused := pim.spend_code(who, code, h.name, true);
        IF refused IS NOT NULL THEN
            RETURN refused;
        END IF;
    END IF;
    q := ROW(NULL, who, groups, role_name, duration_secs, reason, ticket, only_host, h.name,
        now_s, now_s + (r ->> 'request_ttl_secs')::bigint, (r ->> 'approvals_required')::integer,
        'pending', NULL)::pim.requests;
    IF NOT coalesce((r ->> 'require_approval')::boolean, true) THEN
        RETURN pim.start_grant(q, r, h.name);
    END IF;
    INSERT INTO pim.requests ("user", user_groups, role, duration_secs, reason, ticket, only_host,
        filed_on, created_at, expires_at, approvals_required, state)
    VALUES (q."user", q.user_groups, q.role, q.duration_secs, q.reason, q.ticket, q.only_host,
        q.filed_on, q.created_at, q.expires_at, q.approvals_required, q.state)
    RETURNING * INTO q;
    PERFORM pim.audit(h.name, who, 'request', who, role_name, 'pending',
        format('request %s for %s s, %s approvals needed; groups as the host gave them: %s',
            q.id, duration_secs, q.approvals_required, array_to_string(groups, ',')),
        reason, ticket);
    PERFORM pim.wake();
    RETURN jsonb_build_object('pending', jsonb_build_object('request_id', q.id,
        'approvals_required', q.approvals_required));
END
$$;

-- The open request `id` locked, after the checks every decision shares: it is pending and
-- not lapsed, `approver` is named (by name) among the role's approvers of the current
-- policy and is not the requester.
CREATE OR REPLACE FUNCTION pim.decidable(id bigint, approver text, groups text[]) RETURNS pim.requests
LANGUAGE plpgsql SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    q pim.requests;
    r jsonb;
BEGIN
    PERFORM pim.check_name('the approver', approver);
    PERFORM pim.check_names('a group', groups);
    SELECT * INTO q FROM pim.requests WHERE requests.id = decidable.id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM pim.refuse('PM008', format('there is no request %s', id));
    END IF;
    IF q.state <> 'pending' OR q.expires_at <= pim.now_s() THEN
        PERFORM pim.refuse('PM009', format('request %s is %s', id,
            CASE WHEN q.state = 'pending' THEN 'expired' ELSE q.state END));
    END IF;
    IF q."user" = approver THEN
        PERFORM pim.refuse('PM007', 'you cannot decide your own request');
    END IF;
    r := (pim.current_policy()).normalized -> 'roles' -> q.role;
    IF r IS NULL THEN
        PERFORM pim.refuse('PM009', format('the role %s is no longer in the policy', q.role));
    END IF;
    -- By name only: a group membership is the calling host's word, and a host could
    -- enrol users of its own invention, say they are in the group and approve.
    IF NOT pim.named(r, 'approver_users', 'approver_groups', approver, '{}') THEN
        IF pim.named(r, 'approver_users', 'approver_groups', approver, groups) THEN
            PERFORM pim.refuse('PM007', format('%s approves %s only through a group, which the fleet '
                'does not count (the host vouches for it alone): name %s in the role''s approvers',
                approver, q.role, approver));
        END IF;
        PERFORM pim.refuse('PM007', format('%s may not decide requests for %s', approver, q.role));
    END IF;
    IF EXISTS (SELECT FROM pim.approvals a WHERE a.request_id = q.id AND a.approver = decidable.approver) THEN
        PERFORM pim.refuse('PM009', format('%s has already approved request %s', approver, id));
    END IF;
    RETURN q;
END
$$;

CREATE OR REPLACE FUNCTION pim_api.approve(id bigint, approver text, groups text[], code text,
    comment text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
    q pim.requests := pim.decidable(id, approver, groups);
    r jsonb := (pim.current_policy()).normalized -> 'roles' -> q.role;
    refused jsonb;
    given bigint;
BEGIN
    PERFORM pim.check_text('the comment', comment, 1024);
    PERFORM pim.check_text('the code', code, 64);
    -- The requester must still be eligible (their groups as the filing host gave them).
    IF NOT pim.named(r, 'eligible_users', 'eligible_groups', q."user", q.user_groups) THEN
        PERFORM pim.refuse('PM009', format('%s is no longer eligible for %s', q."user", q.role));
    END IF;
    refused := pim.spend_code(approver, code, h.name, true);
    IF refused IS NOT NULL THEN
        RETURN refused;
    END IF;
    INSERT INTO pim.approvals (request_id, approver, approver_groups, given_on, comment, at)
    VALUES (q.id, approver, groups, h.name, comment, pim.now_s());
    SELECT count(*) INTO given FROM pim.approvals a WHERE a.request_id = q.id;
    PERFORM pim.audit(h.name, approver, 'approve', q."user", q.role, 'success',
        format('request %s: approval %s of %s; groups as the host gave them: %s', q.id, given,
            q.approvals_required, array_to_string(groups, ',')), comment);
    IF given < q.approvals_required THEN
        PERFORM pim.wake();
        RETURN jsonb_build_object('still_pending', jsonb_build_object('approvals', given,
            'required', q.approvals_required));
    END IF;
    UPDATE pim.requests SET state = 'approved', decided_at = pim.now_s() WHERE requests.id = q.id;
    RETURN pim.start_grant(q, r, h.name);
END
$$;

CREATE OR REPLACE FUNCTION pim_api.deny(id bigint, approver text, groups text[], code text,
    comment text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
    q pim.requests := pim.decidable(id, approver, groups);
    refused jsonb;
BEGIN
    PERFORM pim.check_text('the comment', comment, 1024);
    PERFORM pim.check_text('the code', code, 64);
    refused := pim.spend_code(approver, code, h.name, true);
    IF refused IS NOT NULL THEN
        RETURN refused;
    END IF;
    UPDATE pim.requests SET state = 'denied', decided_at = pim.now_s() WHERE requests.id = q.id;
    PERFORM pim.audit(h.name, approver, 'deny', q."user", q.role, 'success',
        format('request %s denied', q.id), comment);
    PERFORM pim.wake();
    RETURN '{"denied": true}';
END
$$;

CREATE OR REPLACE FUNCTION pim_api.cancel(who text, id bigint) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
    q pim.requests;
BEGIN
    PERFORM pim.check_name('the user', who);
    SELECT * INTO q FROM pim.requests WHERE requests.id = cancel.id AND "user" = who FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM pim.refuse('PM008', format('%s has no request %s', who, id));
    END IF;
    IF q.state <> 'pending' THEN
        PERFORM pim.refuse('PM009', format('request %s is %s', id, q.state));
    END IF;
    -- The user's word is only the filing host's: another host cannot withdraw it.
    IF q.filed_on <> h.name THEN
        PERFORM pim.audit_refusal(h.name, who, 'cancel', who, q.role,
            format('request %s was filed on host %s, not this one', id, q.filed_on));
        RETURN pim.refusal('PM007', format('request %s was filed on host %s; only that host can cancel it',
            id, q.filed_on));
    END IF;
    UPDATE pim.requests SET state = 'cancelled', decided_at = pim.now_s() WHERE requests.id = q.id;
    PERFORM pim.audit(h.name, who, 'cancel', who, q.role, 'success', format('request %s cancelled', id));
    PERFORM pim.wake();
    RETURN '{}';
END
$$;

CREATE OR REPLACE FUNCTION pim_api.requests_for(approver text, groups text[]) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
    roles jsonb := (pim.current_policy()).normalized -> 'roles';
BEGIN
    PERFORM pim.check_name('the approver', approver);
    PERFORM pim.check_names('a group', groups);
    RETURN coalesce((SELECT jsonb_agg(pim.request_json(q) ORDER BY q.id) FROM pim.requests q
        WHERE q.state = 'pending' AND q.expires_at > pim.now_s() AND q."user" <> approver
          AND roles ? q.role
          AND pim.named(roles -> q.role, 'approver_users', 'approver_groups', approver, '{}')
          AND NOT EXISTS (SELECT FROM pim.approvals a WHERE a.request_id = q.id
                          AND a.approver = requests_for.approver)), '[]');
END
$$;

-- Ends the live grants of `who` for `role_name` (`why`: deactivated, revoked); their ids.
CREATE OR REPLACE FUNCTION pim.end_grants(who text, role_name text, why text, actor text,
    host text, reason text) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    ended jsonb;
BEGIN
    WITH e AS (
        UPDATE pim.grants SET ended_at = pim.now_s(), end_reason = why
        WHERE "user" = who AND role = role_name AND ended_at IS NULL AND ends_at > pim.now_s()
        RETURNING id
    )
    SELECT coalesce(jsonb_agg(id ORDER BY id), '[]') INTO ended FROM e;
    IF jsonb_array_length(ended) = 0 THEN
        PERFORM pim.refuse('PM008', format('%s holds no live grant of %s', who, role_name));
    END IF;
    PERFORM pim.audit(host, actor, CASE why WHEN 'revoked' THEN 'admin-revoke' ELSE 'deactivate' END,
        who, role_name, 'success', format('grants %s %s', ended, why), reason);
    PERFORM pim.wake();
    RETURN ended;
END
$$;

CREATE OR REPLACE FUNCTION pim_api.deactivate(who text, role_name text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
BEGIN
    PERFORM pim.check_name('the user', who);
    PERFORM pim.check_name('the role', role_name);
    -- Only a host the grant applies on speaks for its user: another host could otherwise
    -- end anyone's grant anywhere.
    IF EXISTS (SELECT FROM pim.grants g WHERE g."user" = who AND g.role = role_name
               AND g.ended_at IS NULL AND g.ends_at > pim.now_s())
       AND NOT EXISTS (SELECT FROM pim.grants g WHERE g."user" = who AND g.role = role_name
               AND g.ended_at IS NULL AND g.ends_at > pim.now_s()
               AND pim.in_scope(g.scope, g.only_host, h)) THEN
        PERFORM pim.audit_refusal(h.name, who, 'deactivate', who, role_name,
            'the grant does not apply on this host');
        RETURN pim.refusal('PM007', format('the grant of %s to %s does not apply on host %s, which cannot end it',
            role_name, who, h.name));
    END IF;
    RETURN pim.end_grants(who, role_name, 'deactivated', who, h.name, '');
END
$$;

CREATE OR REPLACE FUNCTION pim_api.revoke(actor text, code text, who text, role_name text,
    reason text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
    refused jsonb;
BEGIN
    PERFORM pim.check_name('the user', who);
    PERFORM pim.check_name('the role', role_name);
    PERFORM pim.check_text('the reason', reason, 1024);
    IF NOT EXISTS (SELECT FROM pim.grants WHERE "user" = who AND role = role_name
                   AND ended_at IS NULL AND ends_at > pim.now_s()) THEN
        PERFORM pim.refuse('PM008', format('%s holds no live grant of %s', who, role_name));
    END IF;
    refused := pim.admin_proof(actor, code, h.name);
    IF refused IS NOT NULL THEN
        RETURN refused;
    END IF;
    RETURN pim.end_grants(who, role_name, 'revoked', actor, h.name, reason);
END
$$;

-- Marks the grants past their end as ended (and lapses the requests past their expiry).
-- Hosts race to call it: the row lock of UPDATE lets one transaction end each grant; the
-- others find ended_at set and skip it, so each grant has one winner and one record.
CREATE OR REPLACE FUNCTION pim_api.expire_due() RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
    g record;
    ended jsonb := '[]';
BEGIN
    -- Rows another session holds are left to it (it expires them, or the next round here
    -- does): a host idling on a locked row must not stall every other host's round.
    FOR g IN UPDATE pim.grants SET ended_at = ends_at, end_reason = 'expired'
             WHERE id IN (SELECT id FROM pim.grants
                          WHERE ends_at <= pim.now_s() AND ended_at IS NULL
                          FOR UPDATE SKIP LOCKED)
             RETURNING id, "user", role LOOP
        PERFORM pim.audit(h.name, 'pimd', 'expire', g."user", g.role, 'success',
            format('grant %s expired', g.id));
        ended := ended || to_jsonb(g.id);
    END LOOP;
    FOR g IN UPDATE pim.requests SET state = 'expired', decided_at = pim.now_s()
             WHERE id IN (SELECT id FROM pim.requests
                          WHERE state = 'pending' AND expires_at <= pim.now_s()
                          FOR UPDATE SKIP LOCKED)
             RETURNING id, "user", role LOOP
        PERFORM pim.audit(h.name, 'pimd', 'request-expire', g."user", g.role, 'success',
            format('request %s lapsed', g.id));
    END LOOP;
    RETURN ended;
END
$$;

-- Stores the host's local audit records (a JSON list of AuditRecord, at most 1000 and
-- pim.ship_max_bytes() of JSON); a record already stored (same host, same local id) is
-- skipped. Returns how many were new.
-- A host's shipped audit continues its own chain: a new record's local id is above every one
-- it shipped, and its prev is the hash of the last one (its first shipment starts anywhere:
-- the host had a history before it joined); a record shipped again is the one stored. A gap
-- or a fork is refused, naming the records, and nothing of the batch is stored.
CREATE OR REPLACE FUNCTION pim.check_shipped_chain(host_name text, rec jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    shipped_id bigint := (rec ->> 'id')::bigint;
    stored pim.audit;
    last pim.audit;
BEGIN
    -- One shipment of a host at a time: the last record cannot move under this one.
    PERFORM 1 FROM pim.hosts WHERE name = host_name FOR UPDATE;
    SELECT * INTO stored FROM pim.audit WHERE host = host_name AND local_id = shipped_id;
    IF FOUND THEN
        IF stored.hash IS DISTINCT FROM rec ->> 'hash' THEN
            PERFORM pim.refuse('PM009', format('local audit record %s differs from the one '
                'this host shipped before: a fork of its audit chain', shipped_id));
        END IF;
        RETURN;
    END IF;
    SELECT * INTO last FROM pim.audit WHERE host = host_name AND local_id IS NOT NULL
        ORDER BY local_id DESC LIMIT 1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF shipped_id < last.local_id THEN
        PERFORM pim.refuse('PM009', format('local audit record %s comes after record %s was '
            'shipped: local ids must increase', shipped_id, last.local_id));
    END IF;
    IF rec ->> 'prev' IS DISTINCT FROM last.hash THEN
        PERFORM pim.refuse('PM009', format('local audit record %s does not follow record %s, '
            'the last this host shipped (its prev is not that record''s hash): a gap or a '
            'fork in its audit chain', shipped_id, last.local_id));
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION pim_api.ship_audit(records jsonb) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
    rec jsonb;
    stored bigint := 0;
    n bigint;
BEGIN
    -- Bounded before any work; a refusal stores nothing (pimd ships in smaller batches).
    IF jsonb_typeof(records) IS DISTINCT FROM 'array' OR jsonb_array_length(records) > 1000
        OR octet_length(records::text) > pim.ship_max_bytes() THEN
        PERFORM pim.refuse('PM002', format('ship_audit takes a list of at most 1000 records '
            'and %s bytes of JSON a call; ship in smaller batches', pim.ship_max_bytes()));
    END IF;
    FOR rec IN SELECT * FROM jsonb_array_elements(records) LOOP
        -- The local id is what makes a retry harmless: a record without one is refused.
        IF jsonb_typeof(rec -> 'id') IS DISTINCT FROM 'number'
            OR jsonb_typeof(rec -> 'at') IS DISTINCT FROM 'number' THEN
            PERFORM pim.refuse('PM002', 'a shipped audit record needs its local id and time');
        END IF;
        PERFORM pim.check_shipped_chain(h.name, rec);
        INSERT INTO pim.audit (at, host, local_id, actor, action, "user", role, outcome, reason,
            ticket, detail, prev, hash)
        VALUES ((rec ->> 'at')::bigint, h.name, (rec ->> 'id')::bigint,
            pim.check_text('actor', rec ->> 'actor', 256),
            pim.check_text('action', rec ->> 'action', 64),
            pim.check_text('user', rec ->> 'user', 256),
            pim.check_text('role', rec ->> 'role', 256),
            pim.check_text('outcome', rec ->> 'outcome', 64),
            pim.check_text('reason', rec ->> 'reason', 4096),
            pim.check_text('ticket', rec ->> 'ticket', 1024),
            pim.check_text('detail', rec ->> 'detail', 4096),
            pim.check_text('prev', rec ->> 'prev', 128),
            pim.check_text('hash', rec ->> 'hash', 128))
        ON CONFLICT (host, local_id) DO NOTHING;
        GET DIAGNOSTICS n = ROW_COUNT;
        stored := stored + n;
    END LOOP;
    UPDATE pim.hosts SET last_seen = pim.now_s() WHERE name = h.name;
    RETURN stored;
END
$$;

CREATE OR REPLACE FUNCTION pim_api.push_policy(actor text, code text, policy_text text,
    normalized jsonb) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
    refused jsonb := pim.admin_proof(actor, code, h.name);
BEGIN
    IF refused IS NOT NULL THEN
        RETURN refused;
    END IF;
    RETURN jsonb_build_object('version', pim.store_policy(policy_text, normalized, actor, h.name));
END
$$;

CREATE OR REPLACE FUNCTION pim_api.add_host(actor text, code text, host_name text, tags text[])
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
    refused jsonb := pim.admin_proof(actor, code, h.name);
BEGIN
    IF refused IS NOT NULL THEN
        RETURN refused;
    END IF;
    RETURN jsonb_build_object('password', pim.create_host(host_name, tags, actor, h.name));
END
$$;

CREATE OR REPLACE FUNCTION pim_api.hosts() RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
BEGIN
    RETURN coalesce((SELECT jsonb_agg(jsonb_build_object('name', x.name, 'tags', to_jsonb(x.tags),
        'last_seen', x.last_seen, 'last_sync', x.last_sync, 'skew_ms', x.skew_ms,
        'disabled_at', x.disabled_at, 'disabled_by', x.disabled_by) ORDER BY x.name)
        FROM pim.hosts x), '[]');
END
$$;

-- Host `host_name` locked for an administrator's change, or a refusal.
CREATE OR REPLACE FUNCTION pim.host_for_update(host_name text) RETURNS pim.hosts
LANGUAGE plpgsql SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    target pim.hosts;
BEGIN
    PERFORM pim.check_name('the host', host_name);
    SELECT * INTO target FROM pim.hosts WHERE name = host_name FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM pim.refuse('PM008', format('there is no host %s in the fleet', quote_literal(host_name)));
    END IF;
    RETURN target;
END
$$;

-- Host `host_name`, read without a lock (its own sessions may hold its row), or a refusal.
CREATE OR REPLACE FUNCTION pim.host_named(host_name text) RETURNS pim.hosts
LANGUAGE plpgsql SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    target pim.hosts;
BEGIN
    PERFORM pim.check_name('the host', host_name);
    SELECT * INTO target FROM pim.hosts WHERE name = host_name;
    IF NOT FOUND THEN
        PERFORM pim.refuse('PM008', format('there is no host %s in the fleet', quote_literal(host_name)));
    END IF;
    RETURN target;
END
$$;

-- Ends every session of `login` but the caller's, waiting up to 3 s for each to be gone
-- (and its locks with it), and again for those that logged in meanwhile, until none is
-- left; one it may not end is an error (a disable must not say done while the host is in).
CREATE OR REPLACE FUNCTION pim.end_sessions_of(login text) RETURNS void
LANGUAGE plpgsql SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    found_one boolean;
BEGIN
    FOR attempt IN 1..5 LOOP
        -- pg_stat_activity is read once per transaction unless its snapshot is cleared.
        PERFORM pg_stat_clear_snapshot();
        found_one := false;
        FOR a IN SELECT pid FROM pg_stat_activity WHERE usename = login AND pid <> pg_backend_pid() LOOP
            found_one := true;
            IF NOT pg_terminate_backend(a.pid, 3000) THEN
                RAISE LOG 'pim: session % of % did not end within 3 s', a.pid, login;
            END IF;
        END LOOP;
        IF NOT found_one THEN
            RETURN;
        END IF;
    END LOOP;
    PERFORM pg_stat_clear_snapshot();
    IF EXISTS (SELECT FROM pg_stat_activity WHERE usename = login AND pid <> pg_backend_pid()) THEN
        PERFORM pim.refuse('PM009', format('the sessions of %s keep coming back; try again', login));
    END IF;
END
$$;

-- An administrator disables host `host_name` (a host compromised or retired): its open
-- sessions end first (whatever locks they held with them, so that a hostile host cannot
-- hold off its own disabling), its login can no longer log in, pim.caller() refuses
-- whatever it still sends, the grants for it alone end, the pending requests it filed or
-- that are for it alone are cancelled, the enrolment tickets shown on it are void and the
-- approvals given on it no longer count for pending requests. Other grants are left: their
-- codes were checked here. The users who enrolled on it are named (their secrets were made
-- there: an administrator re-issues them tickets with `pim admin mfa-ticket USER --reset`).
CREATE OR REPLACE FUNCTION pim_api.disable_host(actor text, code text, host_name text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
    target pim.hosts;
    refused jsonb;
    ended jsonb;
    cancelled jsonb;
    voided jsonb;
    withdrawn jsonb;
    enrolled jsonb;
    g record;
BEGIN
    target := pim.host_named(host_name);
    IF target.name = h.name THEN
        PERFORM pim.refuse('PM009', format('host %s cannot disable itself; run this on another host', h.name));
    END IF;
    IF target.disabled_at IS NOT NULL THEN
        PERFORM pim.refuse('PM009', format('the host %s is already disabled', host_name));
    END IF;
    refused := pim.admin_proof(actor, code, h.name);
    IF refused IS NOT NULL THEN
        RETURN refused;
    END IF;
    PERFORM pim.end_sessions_of(target.login);
    target := pim.host_for_update(host_name);
    IF target.disabled_at IS NOT NULL THEN
        PERFORM pim.refuse('PM009', format('the host %s is already disabled', host_name));
    END IF;
    UPDATE pim.hosts SET disabled_at = pim.now_s(), disabled_by = actor WHERE name = host_name;
    EXECUTE format('ALTER ROLE %I NOLOGIN', target.login);
    -- A session that logged in again while the above waited for its lock.
    PERFORM pim.end_sessions_of(target.login);
    ended := '[]';
    FOR g IN UPDATE pim.grants SET ended_at = pim.now_s(), end_reason = 'host disabled'
             WHERE only_host = host_name AND ended_at IS NULL AND ends_at > pim.now_s()
             RETURNING id, "user", role LOOP
        PERFORM pim.audit(h.name, actor, 'admin-revoke', g."user", g.role, 'success',
            format('grant %s ended: its host %s was disabled', g.id, host_name));
        ended := ended || to_jsonb(g.id);
    END LOOP;
    cancelled := '[]';
    FOR g IN UPDATE pim.requests SET state = 'cancelled', decided_at = pim.now_s()
             WHERE state = 'pending' AND (filed_on = host_name OR only_host = host_name)
             RETURNING id, "user", role LOOP
        PERFORM pim.audit(h.name, actor, 'cancel', g."user", g.role, 'success',
            format('request %s cancelled: its host %s was disabled', g.id, host_name));
        cancelled := cancelled || to_jsonb(g.id);
    END LOOP;
    voided := '[]';
    FOR g IN DELETE FROM pim.enrolment_tickets WHERE issued_on = host_name
             RETURNING "user", issued_by LOOP
        PERFORM pim.audit(h.name, actor, 'mfa-ticket-void', g."user", '', 'success',
            format('the enrolment ticket %s issued on host %s is void: the host was disabled',
                g.issued_by, host_name));
        voided := voided || to_jsonb(g."user");
    END LOOP;
    withdrawn := '[]';
    FOR g IN DELETE FROM pim.approvals a USING pim.requests q
             WHERE a.request_id = q.id AND q.state = 'pending' AND a.given_on = host_name
             RETURNING q.id, q."user", q.role, a.approver LOOP
        PERFORM pim.audit(h.name, actor, 'admin-host-disable', g."user", g.role, 'success',
            format('the approval of request %s by %s, given on host %s, no longer counts: the host was disabled',
                g.id, g.approver, host_name));
        withdrawn := withdrawn || to_jsonb(g.id);
    END LOOP;
    enrolled := coalesce((SELECT jsonb_agg("user" ORDER BY "user") FROM pim.mfa
                          WHERE enrolled_on = host_name), '[]');
    PERFORM pim.audit(h.name, actor, 'admin-host-disable', '', '', 'success',
        format('host %s disabled; grants ended %s, requests cancelled %s, tickets void %s, '
               'approvals withdrawn from requests %s; enrolled on it: %s',
               host_name, ended, cancelled, voided, withdrawn, enrolled));
    PERFORM pim.wake();
    RETURN jsonb_build_object('grants_ended', ended, 'requests_cancelled', cancelled,
        'tickets_void', voided, 'approvals_withdrawn', withdrawn, 'enrolled_there', enrolled);
END
$$;

CREATE OR REPLACE FUNCTION pim_api.enable_host(actor text, code text, host_name text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
    target pim.hosts;
    refused jsonb;
    password text := encode(pim_crypto.gen_random_bytes(24), 'hex');
BEGIN
    target := pim.host_for_update(host_name);
    IF target.disabled_at IS NULL THEN
        PERFORM pim.refuse('PM009', format('the host %s is not disabled', host_name));
    END IF;
    refused := pim.admin_proof(actor, code, h.name);
    IF refused IS NOT NULL THEN
        RETURN refused;
    END IF;
    -- A session left from before the disable must not come back with the host.
    PERFORM pim.end_sessions_of(target.login);
    UPDATE pim.hosts SET disabled_at = NULL, disabled_by = NULL WHERE name = host_name;
    -- A new password: whoever had the host may know the old one.
    EXECUTE format('ALTER ROLE %I LOGIN PASSWORD %L', target.login, password);
    PERFORM pim.audit(h.name, actor, 'admin-host-enable', '', '', 'success',
        format('host %s enabled with a new database password', host_name));
    PERFORM pim.wake();
    RETURN jsonb_build_object('password', password);
END
$$;

-- Request `id` for `viewer` (`pim show`): its requester, an approver of its role or an
-- administrator, by name; anyone else gets the answer a request that does not exist gets.
CREATE OR REPLACE FUNCTION pim_api.request(viewer text, id bigint) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
    normalized jsonb := (pim.current_policy()).normalized;
    q pim.requests;
BEGIN
    PERFORM pim.check_name('the viewer', viewer);
    SELECT * INTO q FROM pim.requests WHERE requests.id = request.id;
    IF NOT FOUND OR NOT (q."user" = viewer
            OR coalesce(normalized -> 'admins', '[]') ? viewer
            OR pim.named(normalized -> 'roles' -> q.role, 'approver_users', 'approver_groups', viewer, '{}')) THEN
        PERFORM pim.refuse('PM008', format('there is no request %s that %s may see', id, viewer));
    END IF;
    RETURN pim.request_json(q);
END
$$;

-- The schema version these functions are (pimd refuses an authority whose version it does
-- not speak). Open to any host, disabled or not: it reveals nothing else.
CREATE OR REPLACE FUNCTION pim_api.schema_version() RETURNS integer
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$ SELECT version FROM pim.schema_version $$;

-- What applies to `who`'s MFA on the calling host: enrolled, the lockout (this host's or
-- every host's, whichever ends later; 0: none) and this host's recent wrong codes.
CREATE OR REPLACE FUNCTION pim_api.mfa_status(who text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pim, pg_catalog, pg_temp
AS $$
DECLARE
    h pim.hosts := pim.caller();
    m pim.mfa;
    f pim.mfa_host_failures;
    rules record;
    now_s bigint := pim.now_s();
BEGIN
    PERFORM pim.check_name('the user', who);
    SELECT * INTO rules FROM pim.lockout_rules();
    SELECT * INTO m FROM pim.mfa WHERE "user" = who;
    SELECT * INTO f FROM pim.mfa_host_failures x WHERE x."user" = who AND x.host = h.name;
    RETURN jsonb_build_object('enrolled', coalesce(m.confirmed, false),
        'locked_until', (SELECT coalesce(max(u), 0) FROM unnest(ARRAY[m.locked_until, f.locked_until]) u
                         WHERE u > now_s),
        'recent_failures', CASE WHEN f.window_start + rules.window_secs > now_s
                                THEN coalesce(f.failures, 0) ELSE 0 END);
END
$$;

RESET ROLE;

-- Nobody but pim_host may call the API, and nobody else anything in pim: functions are
-- executable by PUBLIC by default.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pim, pim_api FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA pim FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pim FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pim_api TO pim_host;
-- Defence in depth: a host login runs no DO block or function of its own (which could roll
-- back what a call wrote) and makes no temporary objects. The functions above keep
-- working: a language's USAGE is checked when a function is created, by its owner.
REVOKE USAGE ON LANGUAGE plpgsql FROM PUBLIC;
GRANT USAGE ON LANGUAGE plpgsql TO pim_owner;
-- Nor does it sleep holding locks, or take advisory locks (a session-level one outlives
-- any transaction and would hang every `pimd --fleet-setup`): calls are one statement each.
REVOKE EXECUTE ON FUNCTION pg_catalog.pg_sleep(double precision),
    pg_catalog.pg_sleep_for(interval), pg_catalog.pg_sleep_until(timestamp with time zone),
    pg_catalog.pg_advisory_lock(bigint), pg_catalog.pg_advisory_lock(integer, integer),
    pg_catalog.pg_advisory_lock_shared(bigint), pg_catalog.pg_advisory_lock_shared(integer, integer),
    pg_catalog.pg_try_advisory_lock(bigint), pg_catalog.pg_try_advisory_lock(integer, integer),
    pg_catalog.pg_try_advisory_lock_shared(bigint), pg_catalog.pg_try_advisory_lock_shared(integer, integer),
    pg_catalog.pg_advisory_xact_lock(bigint), pg_catalog.pg_advisory_xact_lock(integer, integer),
    pg_catalog.pg_advisory_xact_lock_shared(bigint), pg_catalog.pg_advisory_xact_lock_shared(integer, integer),
    pg_catalog.pg_try_advisory_xact_lock(bigint), pg_catalog.pg_try_advisory_xact_lock(integer, integer),
    pg_catalog.pg_try_advisory_xact_lock_shared(bigint), pg_catalog.pg_try_advisory_xact_lock_shared(integer, integer)
    FROM PUBLIC;
DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END
$$;

-- The limits on hosts added before them (setup is run again after an upgrade).
SELECT pim.limit_host_login(login) FROM pim.hosts;

INSERT INTO pim.schema_version (version) VALUES (2)
ON CONFLICT (only_row) DO UPDATE SET version = excluded.version;
