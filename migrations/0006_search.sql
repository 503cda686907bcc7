-- Substring search over doctors' names on both databases: every 3-character window of a doctor's
-- lower-cased name, pointing at the doctor. A search drives from its rarest window instead of
-- scanning every name (PostgreSQL also has pg_trgm; SQLite has no equivalent index).
CREATE TABLE doctor_name_grams (
    gram TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (gram, user_id)
);
CREATE INDEX doctor_name_grams_user ON doctor_name_grams (user_id);

INSERT INTO doctor_name_grams (gram, user_id)
WITH RECURSIVE pos (user_id, name, i) AS (
    SELECT id, name_lower, 1 FROM users WHERE role = 'doctor' AND length(name_lower) >= 3
    UNION ALL
    SELECT user_id, name, i + 1 FROM pos WHERE i + 3 <= length(name)
)
SELECT DISTINCT substr(name, i, 3), user_id FROM pos WHERE true
ON CONFLICT DO NOTHING;
