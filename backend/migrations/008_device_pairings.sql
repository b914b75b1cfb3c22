-- Paired devices (a VR headset's browser): a short one-time code, created by someone holding the API
-- key, is exchanged once for a long session token kept in a cookie. Only hashes are stored. A row is
-- revoked, never reused; revoking it logs that browser out.
CREATE TABLE device_pairings (
    id               uuid PRIMARY KEY,
    label            text NOT NULL DEFAULT '',
    code_hash        text UNIQUE,                 -- sha256 of the code while it can be claimed
    code_expires_at  timestamptz NOT NULL,
    token_hash       text UNIQUE,                 -- sha256 of the session cookie, once claimed
    user_agent       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    claimed_at       timestamptz,
    last_seen_at     timestamptz,
    revoked_at       timestamptz
);
CREATE INDEX device_pairings_created ON device_pairings (created_at DESC);
