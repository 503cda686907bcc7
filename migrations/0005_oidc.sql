-- Accounts made through an external identity provider: the identity (issuer, subject) a token
-- names, linked to one account. Such accounts may have no phone (users.phone is nullable).

CREATE TABLE user_identities (
    -- the configured issuer without a trailing slash
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX user_identities_user ON user_identities (user_id);
