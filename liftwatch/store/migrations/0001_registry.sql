-- Maintenance companies and the lift registry.
CREATE TABLE companies (
    company_id  TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    contact     TEXT,
    phone       TEXT,
    active      INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE lifts (
    lift_id            TEXT PRIMARY KEY,
    registration_code  TEXT,
    rescue_code        TEXT,
    name               TEXT NOT NULL DEFAULT '',
    address            TEXT NOT NULL DEFAULT '',
    area_code          TEXT,
    company_id         TEXT REFERENCES companies(company_id),
    rated_speed        REAL NOT NULL DEFAULT 1.0,
    floors             INTEGER,
    urban              INTEGER NOT NULL DEFAULT 1,
    active             INTEGER NOT NULL DEFAULT 1,
    overrides          TEXT NOT NULL DEFAULT '{}',
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX lifts_company ON lifts(company_id);
CREATE UNIQUE INDEX lifts_registration_code ON lifts(registration_code)
    WHERE registration_code IS NOT NULL;
