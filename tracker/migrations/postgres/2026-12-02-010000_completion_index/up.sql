-- Only the completions chart reads events by time, so only completions are indexed by time:
-- claims and the other events no longer update a second index.
DROP INDEX job_events_by_kind_at;
CREATE INDEX job_events_completed_at ON job_events (at) WHERE kind = 'complete';
