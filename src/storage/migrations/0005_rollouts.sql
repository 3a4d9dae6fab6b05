-- Flag rollouts of `unleash` exporters: one row per run and exporter, the
-- rollout (step, hold, latest change, its acknowledgement) as JSON, written
-- in the transaction of its run, so a restart resumes at the same step.
CREATE TABLE rollouts (
    run_id     TEXT NOT NULL,
    exporter   TEXT NOT NULL,
    state      TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, exporter)
);

-- The body of a flag change: outbox rows of `unleash` exporters carry their
-- own (a step is no transition); NULL for rows that deliver a transition.
ALTER TABLE outbox ADD COLUMN payload TEXT;
