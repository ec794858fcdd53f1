-- People who log in to the console (docs/console.md § Accounts and sessions). A user has a
-- role and company exactly as an API token has (api/auth.py Principal): the same CHECKs.
-- username keeps the spelling given; username_key (its lower case) makes names unique
-- ignoring case and is what a login looks up. password_hash is argon2id's encoded string
-- (salt and parameters inside), never the password.
CREATE TABLE users (
    user_id             TEXT PRIMARY KEY,
    username            TEXT NOT NULL,
    username_key        TEXT NOT NULL UNIQUE,
    password_hash       TEXT NOT NULL,
    role                TEXT NOT NULL CHECK (role IN ('admin', 'inspector', 'maintainer')),
    company_id          TEXT REFERENCES companies(company_id),
    created_at          INTEGER NOT NULL,       -- epoch ms
    created_by          TEXT NOT NULL,
    password_changed_at INTEGER NOT NULL,
    disabled_at         INTEGER,                -- epoch ms; NULL while the user may log in
    CHECK ((role = 'maintainer') = (company_id IS NOT NULL))
);

-- Login sessions. session_id is the SHA-256 of the random token in the cookie: the token
-- itself is never stored (like api_tokens). A session is valid while not revoked, before
-- expires_at (the absolute lifetime) and within the idle timeout of last_seen_at.
CREATE TABLE sessions (
    session_id   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(user_id),
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);
CREATE INDEX sessions_user ON sessions (user_id);
