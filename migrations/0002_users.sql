-- Connections between patients and doctors, and the durable record that drives account purges.

CREATE TABLE connection_requests (
    id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    doctor_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    note TEXT,
    -- pending | accepted | rejected | withdrawn
    status TEXT NOT NULL DEFAULT 'pending',
    created_at BIGINT NOT NULL,
    decided_at BIGINT
);
CREATE UNIQUE INDEX connection_requests_one_pending
    ON connection_requests (patient_id, doctor_id) WHERE status = 'pending';
CREATE INDEX connection_requests_doctor ON connection_requests (doctor_id, status);

CREATE TABLE connections (
    id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    doctor_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    request_id TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (patient_id, doctor_id)
);
CREATE INDEX connections_doctor ON connections (doctor_id);

-- One row per erased account: the purge job deletes its stored objects and retries until done.
CREATE TABLE deleted_users (
    user_id TEXT PRIMARY KEY,
    -- JSON array of object keys still to delete
    object_keys TEXT NOT NULL DEFAULT '[]',
    deleted_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    done_at BIGINT
);
CREATE INDEX connection_requests_patient ON connection_requests (patient_id, status);
CREATE INDEX deleted_users_due ON deleted_users (done_at, next_attempt_at);
