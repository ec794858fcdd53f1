-- People who log in to the console (docs/console.md § Accounts and sessions); the same
-- tables as the SQLite migration 0012 (comments there).
CREATE TABLE users (
    user_id             TEXT COLLATE "C" PRIMARY KEY,
    username            TEXT NOT NULL,
    username_key        TEXT COLLATE "C" NOT NULL UNIQUE,
    password_hash       TEXT COLLATE "C" NOT NULL,
    role                TEXT NOT NULL CHECK (role IN ('admin', 'inspector', 'maintainer')),
    company_id          TEXT COLLATE "C" REFERENCES companies(company_id),
    created_at          BIGINT NOT NULL,
    created_by          TEXT NOT NULL,
    password_changed_at BIGINT NOT NULL,
    disabled_at         BIGINT,
    CHECK ((role = 'maintainer') = (company_id IS NOT NULL))
);

CREATE TABLE sessions (
    session_id   TEXT COLLATE "C" PRIMARY KEY,
    user_id      TEXT COLLATE "C" NOT NULL REFERENCES users(user_id),
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX sessions_user ON sessions (user_id);
