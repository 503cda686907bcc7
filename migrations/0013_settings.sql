-- Facts about the deployment itself. `secret_fingerprint` names the server secret the database
-- was first used with (a derived key, not the secret): an instance started with another refuses
-- to start, for codes, links and authenticator keys made under one secret fail under another.
CREATE TABLE server_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
