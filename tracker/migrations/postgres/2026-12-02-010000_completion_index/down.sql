DROP INDEX job_events_completed_at;
CREATE INDEX job_events_by_kind_at ON job_events (kind, at);
