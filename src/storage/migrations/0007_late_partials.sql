-- Partials written after the leader judged their window (an instance slow
-- past the grace, or taken for dead): counted in no verdict. The leader
-- counts the ones it finds, per pipeline and per writing instance, so
-- GET /api/v1/cluster shows them whichever instance answers.
ALTER TABLE cluster_judged ADD COLUMN late_partials BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cluster_instances ADD COLUMN late_partials BIGINT NOT NULL DEFAULT 0;
