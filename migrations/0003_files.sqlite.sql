-- The access ledger is append-only: no row is ever changed (rows go only with their owner's account).
CREATE TABLE file_access_log (
    id TEXT PRIMARY KEY,
    -- whose file (the reader of this ledger); no foreign keys: entries outlive files
    owner_id TEXT NOT NULL,
    file_id TEXT NOT NULL,
    file_name TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    -- read (a link issued) | grant | revoke | share | delete
    action TEXT NOT NULL,
    grant_id TEXT,
    -- the doctor a grant, share or revoke was about
    subject_id TEXT,
    at BIGINT NOT NULL,
    ip TEXT NOT NULL,
    user_agent TEXT NOT NULL
);
CREATE INDEX file_access_log_owner ON file_access_log (owner_id, at);
CREATE TRIGGER file_access_log_append_only BEFORE UPDATE ON file_access_log
BEGIN
    SELECT RAISE(ABORT, 'file_access_log is append-only');
END;
