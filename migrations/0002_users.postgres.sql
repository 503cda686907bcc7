-- Substring search on doctors' names (`name_lower LIKE '%' || $1 || '%'`) uses this trigram
-- index instead of scanning every user. pg_trgm is a trusted extension (PostgreSQL 13+): a
-- database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX users_doctor_name_trgm ON users USING gin (name_lower gin_trgm_ops) WHERE role = 'doctor';
