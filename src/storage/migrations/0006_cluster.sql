-- Several instances on one PostgreSQL database (design §8). The tables are
-- created on SQLite too (same migrations everywhere) and stay empty there.

-- The instances: each writes its row at every heartbeat. `incarnation` is
-- new at every start, so a second live process under the same instance
-- name is recognised and refused.
CREATE TABLE cluster_instances (
    instance         TEXT PRIMARY KEY,
    incarnation      TEXT NOT NULL,
    api              TEXT NOT NULL,
    started_at       BIGINT NOT NULL,
    heartbeat_at     BIGINT NOT NULL,
    leader           BIGINT NOT NULL DEFAULT 0,
    partials_pending BIGINT NOT NULL DEFAULT 0
);

-- Each instance's partial state of a window per series: its whole
-- accumulation (counts and the mergeable latency sketch, checkpoint codec),
-- replaced at every flush. `seq` orders the flushes of an instance, so a
-- retried older write never replaces a newer one.
CREATE TABLE partials (
    pipeline     TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    contract     TEXT NOT NULL,
    subject      TEXT NOT NULL,
    instance     TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    samples      BIGINT NOT NULL,
    attributes   TEXT NOT NULL,
    state        TEXT NOT NULL,
    PRIMARY KEY (pipeline, window_start, contract, subject, instance)
);
CREATE INDEX partials_by_instance ON partials (instance, pipeline, window_start);

-- The last window the leader judged, per pipeline: moved forward in the
-- transaction that commits the window's results, only from the value the
-- leader read, so a window is never judged twice (nor by two leaders).
CREATE TABLE cluster_judged (
    pipeline     TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    leader       TEXT NOT NULL,
    judged_at    BIGINT NOT NULL
);

-- How far each instance has written its partials, per pipeline: every
-- window whose close deadline is at or before `written_through` is
-- written. The leader judges a window once every instance that may still
-- hold some of it has written that far.
CREATE TABLE cluster_progress (
    pipeline        TEXT NOT NULL,
    instance        TEXT NOT NULL,
    written_through BIGINT NOT NULL,
    PRIMARY KEY (pipeline, instance)
);

-- Who delivers an exporter's outbox: one instance at a time, for as long
-- as its lease runs (renewed while it delivers).
CREATE TABLE outbox_leases (
    exporter TEXT PRIMARY KEY,
    instance TEXT NOT NULL,
    until    BIGINT NOT NULL
);
