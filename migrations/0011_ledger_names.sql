-- The access ledger keeps the names of the people in each entry as they were when it was
-- written: a doctor who renames themselves or erases their account afterwards does not change
-- who the owner sees in their ledger. Rows from before have none, and show the current name.
ALTER TABLE file_access_log ADD COLUMN actor_name TEXT;
ALTER TABLE file_access_log ADD COLUMN subject_name TEXT;
