-- Whether a session may mark a sign-in alert read depends on whether the alert about that session
-- itself is still unread (`notifications::routes::may_mark_read`): looked up by session.
CREATE INDEX notifications_session ON notifications (session_id) WHERE session_id IS NOT NULL;
