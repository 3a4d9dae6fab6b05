-- verdict's schema, version 1. Plain SQL that SQLite and PostgreSQL both
-- accept: TEXT, BIGINT and DOUBLE PRECISION columns only, booleans as 0/1,
-- times as UNIX nanoseconds (BIGINT), structured values as JSON text.

-- One row per run, superseded ones included. `cumulative` is the run's
-- accumulation (counts and latency sketch) as JSON, so a restart resumes the
-- run exactly where it was.
CREATE TABLE runs (
    run_id            TEXT PRIMARY KEY,
    contract          TEXT NOT NULL,
    contract_version  BIGINT NOT NULL,
    subject           TEXT NOT NULL,
    subject_attributes TEXT NOT NULL,
    state             TEXT NOT NULL,
    reason            TEXT NOT NULL,
    started_at        BIGINT NOT NULL,
    decided_at        BIGINT,
    superseded        BIGINT NOT NULL DEFAULT 0,
    pass_streak       BIGINT NOT NULL DEFAULT 0,
    fail_streak       BIGINT NOT NULL DEFAULT 0,
    windows           BIGINT NOT NULL DEFAULT 0,
    cumulative        TEXT NOT NULL,
    last_window_end   BIGINT,
    first_sample_at   BIGINT,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX runs_by_subject ON runs (contract, subject, superseded, started_at);
CREATE INDEX runs_by_start ON runs (started_at);

-- Window results of every run (bounded per run by the store).
CREATE TABLE windows (
    run_id        TEXT NOT NULL,
    window_start  BIGINT NOT NULL,
    window_end    BIGINT NOT NULL,
    result        TEXT NOT NULL,
    record        TEXT NOT NULL,
    PRIMARY KEY (run_id, window_start)
);

-- Every transition, with its reason, window and observed figures; `event`
-- is the verdict event's JSON exactly as delivered (stable bytes, so a
-- redelivery carries the same body and signature).
CREATE TABLE transitions (
    event_id        TEXT PRIMARY KEY,
    run_id          TEXT NOT NULL,
    previous_state  TEXT NOT NULL,
    state           TEXT NOT NULL,
    reason          TEXT NOT NULL,
    window_start    BIGINT,
    window_end      BIGINT,
    observed        TEXT,
    emitted_at      BIGINT NOT NULL,
    event           TEXT NOT NULL
);
CREATE INDEX transitions_by_run ON transitions (run_id, event_id);

-- The outbox: one row per transition and subscribed exporter, written in
-- the transition's transaction. `state` is pending, delivered or failed; a
-- row is never deleted before it is delivered.
CREATE TABLE outbox (
    event_id        TEXT NOT NULL,
    exporter        TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    PRIMARY KEY (event_id, exporter)
);
CREATE INDEX outbox_pending ON outbox (exporter, state, created_at);

-- Open-window checkpoints: per pipeline, one row per shard plus one for the
-- closed windows the run engine has not judged yet.
CREATE TABLE checkpoints (
    pipeline  TEXT NOT NULL,
    slot      BIGINT NOT NULL,
    taken_at  BIGINT NOT NULL,
    state     TEXT NOT NULL,
    PRIMARY KEY (pipeline, slot)
);

-- Small facts about the database itself (last start, for the write probe).
CREATE TABLE verdict_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
