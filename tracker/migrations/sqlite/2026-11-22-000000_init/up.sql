-- Jobs: one row per job for its whole life. `data_a`..`data_e` hold the input of each stage;
-- `result` holds the final output once the job is done. Times are Unix milliseconds.
CREATE TABLE jobs (
    id               BIGINT  PRIMARY KEY NOT NULL,
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
    completed_at     BIGINT
);
CREATE INDEX jobs_by_stage_state ON jobs (stage, state, id);
CREATE INDEX jobs_by_lease_expiry ON jobs (lease_expires_at) WHERE state = 'leased';
CREATE INDEX jobs_by_completion ON jobs (completed_at) WHERE completed_at IS NOT NULL;

-- Workers: remote (HTTP) or local (engine pool) workers, each holding at most one lease.
CREATE TABLE workers (
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
);
CREATE INDEX workers_by_last_seen ON workers (last_seen);
CREATE INDEX workers_by_stage ON workers (stage, first_seen);
CREATE INDEX workers_by_display_name ON workers (display_name);

-- Leaderboard: completed jobs (any stage) per nickname.
CREATE TABLE leaderboard (
    nickname       TEXT   PRIMARY KEY NOT NULL,
    jobs_completed BIGINT NOT NULL DEFAULT 0
);

-- History of what happened to each job: claims, completions, flags, releases, expiries.
CREATE TABLE job_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    job_id  BIGINT  NOT NULL,
    stage   TEXT    NOT NULL,
    kind    TEXT    NOT NULL,
    worker  TEXT,
    at      BIGINT  NOT NULL,
    detail  TEXT
);
CREATE INDEX job_events_by_job ON job_events (job_id, id);
CREATE INDEX job_events_by_kind_at ON job_events (kind, at);
