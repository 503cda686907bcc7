-- A patient's list of the access they have given (`accessGiven`) reads grants by owner, newest
-- first. Ended grants stay as history, so without this the list would read every grant row.
CREATE INDEX file_grants_owner ON file_grants (owner_id, created_at);
