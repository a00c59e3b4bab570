-- Keys that SQLite can use directly. A `BIGINT PRIMARY KEY` is not SQLite's rowid: every job
-- was found through a separate index on `id` and then through its rowid, and every write kept
-- both up to date. Job numbers become the rowid (`INTEGER PRIMARY KEY`, still 64-bit), and the
-- text-keyed tables (workers by token, leaderboard by nickname) are stored in their key's
-- order (`WITHOUT ROWID`), so a lookup by key is one search instead of two. SQLite cannot
-- change a key in place, so the tables are rebuilt.
CREATE TABLE jobs_rowid (
    id               INTEGER PRIMARY KEY NOT NULL,
    stage            TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    data_a           TEXT,
    data_b           TEXT,
    data_c           TEXT,
    data_d           TEXT,
    data_e           TEXT,
    result           TEXT,
    lease_owner      TEXT,
    lease_token      BIGINT  NOT NULL DEFAULT 0,
    lease_expires_at BIGINT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    flags            INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    completed_at     BIGINT,
    retry_at         BIGINT
);
INSERT INTO jobs_rowid (id, stage, state, data_a, data_b, data_c, data_d, data_e, result, lease_owner,
                        lease_token, lease_expires_at, attempts, flags, error, created_at, updated_at,
                        completed_at, retry_at)
    SELECT id, stage, state, data_a, data_b, data_c, data_d, data_e, result, lease_owner, lease_token,
           lease_expires_at, attempts, flags, error, created_at, updated_at, completed_at, retry_at
    FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_rowid RENAME TO jobs;
CREATE INDEX jobs_by_stage_state ON jobs (stage, state, id);
CREATE INDEX jobs_by_lease_expiry ON jobs (lease_expires_at) WHERE state = 'leased';
CREATE INDEX jobs_by_completion ON jobs (completed_at) WHERE completed_at IS NOT NULL;

CREATE TABLE workers_by_token (
    token          TEXT    PRIMARY KEY NOT NULL,
    display_name   TEXT    NOT NULL,
    stage          TEXT    NOT NULL,
    nickname       TEXT    NOT NULL,
    progress       TEXT    NOT NULL,
    jobs_completed BIGINT  NOT NULL DEFAULT 0,
    first_seen     BIGINT  NOT NULL,
    last_seen      BIGINT  NOT NULL,
    lease_ttl_ms   BIGINT  NOT NULL,
    job_id         BIGINT,
    lease_token    BIGINT
) WITHOUT ROWID;
INSERT INTO workers_by_token (token, display_name, stage, nickname, progress, jobs_completed, first_seen,
                              last_seen, lease_ttl_ms, job_id, lease_token)
    SELECT token, display_name, stage, nickname, progress, jobs_completed, first_seen, last_seen,
           lease_ttl_ms, job_id, lease_token
    FROM workers;
DROP TABLE workers;
ALTER TABLE workers_by_token RENAME TO workers;
CREATE INDEX workers_by_last_seen ON workers (last_seen);
CREATE INDEX workers_by_stage ON workers (stage, first_seen);
CREATE INDEX workers_by_display_name ON workers (display_name);

CREATE TABLE leaderboard_by_nickname (
    nickname       TEXT   PRIMARY KEY NOT NULL,
    jobs_completed BIGINT NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO leaderboard_by_nickname (nickname, jobs_completed) SELECT nickname, jobs_completed FROM leaderboard;
DROP TABLE leaderboard;
ALTER TABLE leaderboard_by_nickname RENAME TO leaderboard;

-- Only the completions chart reads events by time, so only completions are indexed by time:
-- claims and the other events no longer update a second index.
DROP INDEX job_events_by_kind_at;
CREATE INDEX job_events_completed_at ON job_events (at) WHERE kind = 'complete';

-- An event's id is its rowid, which every index entry carries anyway.
DROP INDEX job_events_by_job;
CREATE INDEX job_events_by_job ON job_events (job_id);
