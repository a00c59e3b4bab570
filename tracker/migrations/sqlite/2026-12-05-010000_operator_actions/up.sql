-- Stages an operator paused: their jobs are handed to no worker until resumed.
CREATE TABLE paused_stages (
    stage     TEXT   PRIMARY KEY NOT NULL,
    paused_at BIGINT NOT NULL,
    paused_by TEXT   NOT NULL
);

-- Every operator action (pause, resume, requeue, cancel, add), who did it and what it did.
CREATE TABLE admin_actions (
    id     INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    at     BIGINT  NOT NULL,
    actor  TEXT    NOT NULL,
    action TEXT    NOT NULL,
    detail TEXT    NOT NULL
);
