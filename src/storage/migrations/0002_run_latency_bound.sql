-- The worst quantile bound of a run's windows (JSON), for metrics sources
-- whose histograms arrive at coarse scales or as explicit buckets.
ALTER TABLE runs ADD COLUMN latency_bound TEXT NOT NULL DEFAULT '';
