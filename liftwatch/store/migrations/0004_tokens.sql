-- API bearer tokens. Only the SHA-256 of a token is kept: tokens are 256-bit random strings,
-- so a fast hash is enough (no password stretching needed) and lookup is one index probe.
CREATE TABLE api_tokens (
    token_id     TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'inspector', 'maintainer')),
    company_id   TEXT REFERENCES companies(company_id),
    created_at   INTEGER NOT NULL,          -- epoch ms
    created_by   TEXT NOT NULL,
    revoked_at   INTEGER,                   -- epoch ms; NULL while valid
    last_used_at INTEGER,
    CHECK ((role = 'maintainer') = (company_id IS NOT NULL))
);
