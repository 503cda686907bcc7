-- Notifications: stored first, then pushed (the table itself is created per dialect for its
-- auto-increment id). `notification_heads` holds one row per user that every raising
-- transaction updates first: it serialises the raisers of one user, so that user's ids are
-- committed in increasing order and "id > cursor" never skips a row that commits late.

CREATE INDEX notifications_user ON notifications (user_id, id);
CREATE INDEX notifications_unread ON notifications (user_id, id) WHERE read_at IS NULL;

CREATE TABLE notification_heads (
    user_id TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    raised BIGINT NOT NULL DEFAULT 0,
    last_raised_at BIGINT NOT NULL
);
