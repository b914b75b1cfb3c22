-- Immich sync that mirrors the library (issue 15).

-- Incremental watermarks per selection scope: the whole library ('library') or one album (its id).
-- The old single watermark was kept per server whatever was selected, so switching the selection
-- silently imported nothing; it is dropped, and the first incremental run of each scope lists it
-- in full (only the listing costs: known checksums are not downloaded again).
DROP TABLE immich_sync_state;
CREATE TABLE immich_sync_state (
    server_url        text NOT NULL,
    scope             text NOT NULL,   -- 'library' or an Immich album id
    last_success_at   timestamptz,     -- the updatedAfter of this scope's next incremental listing
    -- The album as it was when last listed. Immich does not bump an asset's updatedAt when it is
    -- added to an album, but it does bump the album's: a different value means a full listing.
    album_updated_at  timestamptz,
    album_asset_count integer,
    last_run_id       uuid,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (server_url, scope)
);

-- Why an item's asset left the Immich timeline (deleted, trashed, archived...). With
-- IMMICH_REMOVED_ASSETS=hide such items are hidden from the library until the asset comes back.
ALTER TABLE media_items
    ADD COLUMN immich_removed    text CHECK (immich_removed IN ('deleted', 'trashed', 'archived', 'not_on_timeline')),
    ADD COLUMN immich_removed_at timestamptz;

-- Further Immich assets with the same bytes as an item that is already stored (Immich duplicates,
-- or a file also uploaded by hand): linked so later runs know them without downloading again.
CREATE TABLE immich_asset_links (
    asset_id   text PRIMARY KEY,
    media_id   uuid NOT NULL REFERENCES media_items (id) ON DELETE CASCADE,
    checksum   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX immich_asset_links_media ON immich_asset_links (media_id);
CREATE INDEX media_items_immich_checksum ON media_items (immich_checksum) WHERE immich_checksum IS NOT NULL;

-- Honest run reports: why assets were skipped, and what left Immich (removed) or came back.
ALTER TABLE immich_import_runs
    ADD COLUMN skips    jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN removed  integer NOT NULL DEFAULT 0,
    ADD COLUMN restored integer NOT NULL DEFAULT 0,
    ADD COLUMN removals jsonb NOT NULL DEFAULT '[]'::jsonb;
