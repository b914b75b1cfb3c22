-- Immich import runs: which job carries a run (so a run whose job died is not taken as still
-- running), what started it, and its options.
ALTER TABLE immich_import_runs
    ADD COLUMN job_id     uuid REFERENCES processing_jobs (id) ON DELETE SET NULL,
    ADD COLUMN trigger    text NOT NULL DEFAULT 'manual' CHECK (trigger IN ('manual', 'schedule', 'cli')),
    ADD COLUMN album_ids  text[] NOT NULL DEFAULT '{}',
    ADD COLUMN total      integer,          -- assets expected, when Immich could tell beforehand
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX immich_import_runs_created ON immich_import_runs (created_at DESC);
CREATE INDEX immich_import_runs_active ON immich_import_runs (status) WHERE status IN ('queued', 'running');
