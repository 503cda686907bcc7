-- Foundation: accounts, one-time codes, per-phone and per-client limits, server-side sessions.
-- Portable DDL: TEXT ids, BIGINT integers (0/1 for flags), timestamps in Unix milliseconds.

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    phone TEXT UNIQUE,
    name TEXT NOT NULL,
    name_lower TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('patient', 'doctor')),
    -- 0 while a clinic-registered patient has not yet signed in with a code.
    phone_verified BIGINT NOT NULL DEFAULT 0,
    doctor_verified BIGINT NOT NULL DEFAULT 0,
    specialization TEXT,
    qualification TEXT,
    registration_number TEXT,
    years_of_experience BIGINT,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX users_role_name ON users (role, name_lower);

CREATE TABLE otp_challenges (
    id TEXT PRIMARY KEY,
    purpose TEXT NOT NULL CHECK (purpose IN ('signup', 'signin')),
    phone TEXT NOT NULL,
    -- signin: the account the code opens (NULL when the phone has none: the code then opens nothing).
    user_id TEXT,
    name TEXT,
    role TEXT,
    code_hash TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    -- live | used | dead (too many wrong tries) | replaced (a newer code was sent)
    state TEXT NOT NULL DEFAULT 'live',
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX otp_challenges_phone ON otp_challenges (phone, purpose, created_at);

CREATE TABLE phone_limits (
    phone TEXT PRIMARY KEY,
    last_sent_at BIGINT NOT NULL DEFAULT 0,
    hour_start BIGINT NOT NULL DEFAULT 0,
    hour_count BIGINT NOT NULL DEFAULT 0,
    -- codes killed by wrong tries since the last successful sign-in; drives the back-off
    dead_codes BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE rate_limits (
    key TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    count BIGINT NOT NULL
);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ip TEXT NOT NULL,
    user_agent TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
