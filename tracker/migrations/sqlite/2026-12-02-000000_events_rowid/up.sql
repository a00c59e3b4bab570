-- Event ids need only grow while events are kept (they are deleted only all at once, by a
-- reset), which a plain rowid key does: AUTOINCREMENT also wrote `sqlite_sequence` on every
-- event. SQLite cannot drop AUTOINCREMENT in place, so the table is rebuilt.
CREATE TABLE job_events_rowid (
    id      INTEGER PRIMARY KEY NOT NULL,
    job_id  BIGINT  NOT NULL,
    stage   TEXT    NOT NULL,
    kind    TEXT    NOT NULL,
    worker  TEXT,
    at      BIGINT  NOT NULL,
    detail  TEXT
);
INSERT INTO job_events_rowid (id, job_id, stage, kind, worker, at, detail)
    SELECT id, job_id, stage, kind, worker, at, detail FROM job_events;
DROP TABLE job_events;
ALTER TABLE job_events_rowid RENAME TO job_events;
CREATE INDEX job_events_by_job ON job_events (job_id, id);
CREATE INDEX job_events_by_kind_at ON job_events (kind, at);
