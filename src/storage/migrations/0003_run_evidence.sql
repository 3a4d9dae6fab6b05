-- The evidence of a run (JSON): each check's running confidence bounds and
-- status for sequential decisions, and the baseline tally its comparisons
-- rest on. Empty for rows written before it existed (a run then resumes its
-- checks from scratch, with bounds no narrower than the data allows).
ALTER TABLE runs ADD COLUMN evidence TEXT NOT NULL DEFAULT '';

-- A run that replaced another (a reset, a new contract version) counts only
-- windows that start at or after this time (UNIX ns); NULL for other runs.
ALTER TABLE runs ADD COLUMN counts_from BIGINT;

-- When an idle run was retired (it left without a verdict); retired runs
-- are purged after a while, so one-shot subjects do not pile up.
ALTER TABLE runs ADD COLUMN retired_at BIGINT;
