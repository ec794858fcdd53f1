-- FAULTS.md 1.1 #2: a lift registered without a rated speed is not checked for overspeed, so
-- rated_speed may be NULL (unknown). Rows stored before keep their value (1.0 was the default
-- and cannot be told apart from an explicit 1.0). SQLite cannot drop NOT NULL in place.
CREATE TABLE lifts_new (
    lift_id            TEXT PRIMARY KEY,
    registration_code  TEXT,
    rescue_code        TEXT,
    name               TEXT NOT NULL DEFAULT '',
    address            TEXT NOT NULL DEFAULT '',
    area_code          TEXT,
    company_id         TEXT REFERENCES companies(company_id),
    rated_speed        REAL,
    floors             INTEGER,
    urban              INTEGER NOT NULL DEFAULT 1,
    active             INTEGER NOT NULL DEFAULT 1,
    overrides          TEXT NOT NULL DEFAULT '{}',
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
INSERT INTO lifts_new SELECT lift_id, registration_code, rescue_code, name, address, area_code,
    company_id, rated_speed, floors, urban, active, overrides, created_at, updated_at FROM lifts;
DROP TABLE lifts;
ALTER TABLE lifts_new RENAME TO lifts;
CREATE INDEX lifts_company ON lifts(company_id);
CREATE UNIQUE INDEX lifts_registration_code ON lifts(registration_code)
    WHERE registration_code IS NOT NULL;
