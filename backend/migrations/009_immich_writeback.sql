-- Immich write-back (issue 15): the 3D versions Parallax uploaded into Immich, so that none is
-- uploaded twice, a changed one replaces the old, the importer never takes them back, and
-- `immich-writeback-undo` can remove every one of them.

-- One row per uploaded (or being uploaded) file. The current version of an item's export has
-- state 'uploading' (checksum recorded before the upload starts, so an import running meanwhile
-- already recognises it), 'uploaded' (Immich gave its id; album and stack still to do) or 'done'.
-- A version replaced by a newer one is 'superseded' until its Immich asset is deleted.
CREATE TABLE immich_writebacks (
    id                uuid PRIMARY KEY,
    -- Kept when the item is deleted here: the asset is still in Immich until undone.
    media_id          uuid REFERENCES media_items (id) ON DELETE SET NULL,
    server_url        text NOT NULL,          -- as immich_sync_state.server_url
    original_asset_id text NOT NULL,          -- the Immich asset this is a 3D version of
    kind              text NOT NULL,          -- derived_assets.kind: stereo | stereo_video
    layout            text NOT NULL,          -- derived_assets.variant: full_sbs, half_sbs, tb, anaglyph
    state             text NOT NULL CHECK (state IN ('uploading', 'uploaded', 'done', 'superseded')),
    sha256            text NOT NULL,          -- of the uploaded file
    checksum          text NOT NULL,          -- base64 SHA-1, as Immich reports an asset's checksum
    filename          text NOT NULL,
    asset_id          text,                   -- the uploaded Immich asset, once Immich answered
    album_id          text,
    stack_id          text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    uploaded_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
-- One current version per original and layout.
CREATE UNIQUE INDEX immich_writebacks_current ON immich_writebacks (server_url, original_asset_id, kind, layout)
    WHERE state <> 'superseded';
CREATE INDEX immich_writebacks_asset ON immich_writebacks (server_url, asset_id);
CREATE INDEX immich_writebacks_checksum ON immich_writebacks (server_url, checksum);
CREATE INDEX immich_writebacks_media ON immich_writebacks (media_id);

-- The album the uploads go to (IMMICH_WRITE_BACK_ALBUM), found by name or created; undo removes
-- it only when Parallax created it and it is empty.
CREATE TABLE immich_writeback_albums (
    server_url  text NOT NULL,
    album_id    text NOT NULL,
    name        text NOT NULL,
    created     boolean NOT NULL,             -- created by Parallax (else it existed already)
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (server_url, album_id)
);
