-- A job given back after a transient failure is not claimed again before `retry_at`
-- (Unix milliseconds); NULL means at once.
ALTER TABLE jobs ADD COLUMN retry_at BIGINT;
