-- Turning two-step sign-in on also takes a code sent by SMS to the account's phone, so a stolen
-- session cannot turn it on with an authenticator of its own and lock the owner out. The code
-- belongs to the pending set-up: stored as a keyed hash, with its wrong tries and its end.
ALTER TABLE user_totp ADD COLUMN sms_code_hash TEXT;
ALTER TABLE user_totp ADD COLUMN sms_attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE user_totp ADD COLUMN sms_expires_at BIGINT NOT NULL DEFAULT 0;
