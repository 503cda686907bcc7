-- Two-step sign-in: an authenticator app's TOTP (RFC 6238) as a second factor after the SMS code.

CREATE TABLE user_totp (
    user_id TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    -- nonce || ciphertext (hex), encrypted with a key derived from the server secret
    secret_enc TEXT NOT NULL,
    -- NULL while set up but not yet confirmed with a code
    enabled_at BIGINT,
    -- the newest 30-second step whose code was accepted: each code works once
    last_step BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

-- A sign-in whose SMS code was right, waiting for the authenticator's code.
CREATE TABLE second_factor_challenges (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    phone TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    -- live | used | dead (too many wrong codes)
    state TEXT NOT NULL DEFAULT 'live',
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX second_factor_challenges_expiry ON second_factor_challenges (expires_at);
