-- Media items, processing jobs, derived assets, Immich sync state.
CREATE TABLE media_items (
    id                uuid PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN ('photo', 'video')),
    sha256            text NOT NULL UNIQUE,
    original_filename text NOT NULL,
    mime_type         text NOT NULL,
    format            text,
    size_bytes        bigint NOT NULL,
    storage_path      text NOT NULL,          -- relative to MEDIA_ROOT
    width             integer,
    height            integer,
    duration_s        double precision,
    fps               double precision,
    frame_count       integer,
    rotation          integer NOT NULL DEFAULT 0,
    has_audio         boolean NOT NULL DEFAULT false,
    captured_at       timestamptz,
    source            text NOT NULL DEFAULT 'upload' CHECK (source IN ('upload', 'immich')),
    immich_asset_id   text UNIQUE,
    immich_checksum   text,
    metadata          jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX media_items_kind_created ON media_items (kind, created_at DESC);

CREATE TABLE processing_jobs (
    id              uuid PRIMARY KEY,
    media_id        uuid REFERENCES media_items (id) ON DELETE CASCADE,
    task            text NOT NULL,
    parameters      jsonb NOT NULL DEFAULT '{}'::jsonb,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'queued', 'processing', 'completed', 'failed', 'cancelled', 'skipped')),
    progress_done   integer NOT NULL DEFAULT 0,
    progress_total  integer,
    stage           text,
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL DEFAULT 3,
    last_error      text,
    error_kind      text,                       -- invalid_input | transient | timeout | internal | worker_lost
    skip_reason     text,
    enable_with     text,                       -- the variable that would enable a skipped task
    timeout_s       integer,
    rq_job_id       text,
    worker_name     text,
    heartbeat_at    timestamptz,
    run_after       timestamptz,
    result          jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    queued_at       timestamptz,
    started_at      timestamptz,
    finished_at     timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX processing_jobs_status ON processing_jobs (status, created_at);
CREATE INDEX processing_jobs_media ON processing_jobs (media_id, task);
-- At most one job per item and task is pending, queued or running at a time.
CREATE UNIQUE INDEX processing_jobs_one_active ON processing_jobs (media_id, task)
    WHERE status IN ('pending', 'queued', 'processing') AND media_id IS NOT NULL;

CREATE TABLE derived_assets (
    id          uuid PRIMARY KEY,
    media_id    uuid NOT NULL REFERENCES media_items (id) ON DELETE CASCADE,
    job_id      uuid REFERENCES processing_jobs (id) ON DELETE SET NULL,
    kind        text NOT NULL,               -- depth | depth_frames | cutout
    variant     text NOT NULL DEFAULT '',    -- e.g. the cut-out background
    model       text,
    parameters  jsonb NOT NULL DEFAULT '{}'::jsonb,
    path        text NOT NULL,               -- relative to MEDIA_ROOT
    mime_type   text NOT NULL,
    size_bytes  bigint NOT NULL,
    width       integer,
    height      integer,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (media_id, kind, variant)
);

CREATE TABLE immich_sync_state (
    id                  integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    server_url          text,
    last_success_at     timestamptz,   -- the updatedAfter of the next incremental run
    last_run_id         uuid,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE immich_import_runs (
    id            uuid PRIMARY KEY,
    mode          text NOT NULL CHECK (mode IN ('full', 'incremental')),
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    updated_after timestamptz,
    started_at    timestamptz,
    finished_at   timestamptz,
    seen          integer NOT NULL DEFAULT 0,
    imported      integer NOT NULL DEFAULT 0,
    unchanged     integer NOT NULL DEFAULT 0,
    skipped       integer NOT NULL DEFAULT 0,
    failed        integer NOT NULL DEFAULT 0,
    failures      jsonb NOT NULL DEFAULT '[]'::jsonb,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- The newest job of each task per item: what the item's state is made of (older runs are history).
CREATE VIEW latest_jobs AS
    SELECT DISTINCT ON (media_id, task) *
    FROM processing_jobs WHERE media_id IS NOT NULL
    ORDER BY media_id, task, created_at DESC;
