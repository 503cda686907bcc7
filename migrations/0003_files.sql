-- Medical files, the grants and 30-minute shares on them. (The append-only access ledger is in
-- the dialect files: its guard trigger is written differently on each database.)

CREATE TABLE files (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- server-generated (files/<random>), never user text
    object_key TEXT NOT NULL UNIQUE,
    file_name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    -- JSON array of strings
    tags TEXT NOT NULL DEFAULT '[]',
    report_type TEXT,
    report_date TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX files_owner ON files (owner_id, created_at);

-- kind 'grant': permanent (optionally with an end); kind 'share': 30 minutes.
-- Live = ended_at IS NULL AND (expires_at IS NULL OR expires_at > now).
CREATE TABLE file_grants (
    id TEXT PRIMARY KEY,
    file_id TEXT NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    owner_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    grantee_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('grant', 'share')),
    access TEXT NOT NULL DEFAULT 'r',
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    ended_at BIGINT,
    ended_reason TEXT
);
CREATE INDEX file_grants_file ON file_grants (file_id, grantee_id);
CREATE INDEX file_grants_grantee ON file_grants (grantee_id, owner_id);
-- At most one open permanent grant per file and doctor: two racing grants cannot both land.
CREATE UNIQUE INDEX file_grants_one_open
    ON file_grants (file_id, grantee_id) WHERE kind = 'grant' AND ended_at IS NULL;
