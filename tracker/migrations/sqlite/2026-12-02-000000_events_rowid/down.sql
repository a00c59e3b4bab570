CREATE TABLE job_events_autoincrement (
    id      INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    job_id  BIGINT  NOT NULL,
    stage   TEXT    NOT NULL,
    kind    TEXT    NOT NULL,
    worker  TEXT,
    at      BIGINT  NOT NULL,
    detail  TEXT
);
INSERT INTO job_events_autoincrement (id, job_id, stage, kind, worker, at, detail)
    SELECT id, job_id, stage, kind, worker, at, detail FROM job_events;
DROP TABLE job_events;
ALTER TABLE job_events_autoincrement RENAME TO job_events;
CREATE INDEX job_events_by_job ON job_events (job_id, id);
CREATE INDEX job_events_by_kind_at ON job_events (kind, at);
