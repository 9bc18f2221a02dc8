//! The schema, one DDL for both backends: only TEXT and BIGINT columns
//! (timestamps in milliseconds since the epoch), so the same SQL runs on
//! SQLite and PostgreSQL. Migrations are applied in order and recorded.

pub const MIGRATIONS: &[&str] = &[
    // 1: entries, tags, accounts, catalogues, upload sessions.
    "CREATE TABLE entries (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        description TEXT NOT NULL,
        os TEXT,
        arch TEXT,
        format TEXT,
        publisher TEXT NOT NULL,
        catalogue TEXT NOT NULL,
        series TEXT,
        status TEXT NOT NULL,
        valid_until BIGINT,
        created BIGINT NOT NULL,
        updated BIGINT NOT NULL,
        blob_key TEXT,
        doc TEXT NOT NULL
    );
    CREATE INDEX entries_status_created ON entries (status, created);
    CREATE INDEX entries_catalogue ON entries (catalogue);
    CREATE INDEX entries_series ON entries (series, created);
    CREATE INDEX entries_os ON entries (os);
    CREATE INDEX entries_publisher ON entries (publisher);
    CREATE TABLE entry_tags (
        entry_id TEXT NOT NULL,
        tag TEXT NOT NULL,
        PRIMARY KEY (entry_id, tag)
    );
    CREATE INDEX entry_tags_tag ON entry_tags (tag);
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        created BIGINT NOT NULL,
        password_hash TEXT
    );
    CREATE TABLE tokens (
        hash TEXT PRIMARY KEY,
        user_name TEXT NOT NULL,
        kind TEXT NOT NULL,
        created BIGINT NOT NULL
    );
    CREATE TABLE catalogues (
        name TEXT PRIMARY KEY,
        public BIGINT NOT NULL,
        description TEXT NOT NULL
    );
    CREATE TABLE catalogue_members (
        catalogue TEXT NOT NULL,
        user_name TEXT NOT NULL,
        PRIMARY KEY (catalogue, user_name)
    );
    CREATE TABLE upload_sessions (
        id TEXT PRIMARY KEY,
        entry_id TEXT NOT NULL,
        received BIGINT NOT NULL,
        chunks TEXT NOT NULL,
        created BIGINT NOT NULL,
        updated BIGINT NOT NULL
    );
    INSERT INTO catalogues (name, public, description) VALUES ('public', 1, 'Readable by everyone');",
    // 2: indexes for latest-per-series and title order (benches/market.sh).
    "DROP INDEX entries_series;
    CREATE INDEX entries_series_catalogue ON entries (series, catalogue, created);
    CREATE INDEX entries_title ON entries (lower(title));",
    // 3: endorsements (kiln-trust verifies them; the document holds the signature).
    "CREATE TABLE endorsements (
        id TEXT PRIMARY KEY,
        entry_id TEXT NOT NULL,
        endorser TEXT NOT NULL,
        status TEXT NOT NULL,
        created BIGINT NOT NULL,
        updated BIGINT NOT NULL,
        doc TEXT NOT NULL
    );
    CREATE INDEX endorsements_entry ON endorsements (entry_id, created);",
];
