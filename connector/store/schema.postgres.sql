-- crm-risk-connector state store, schema version 1, PostgreSQL dialect of schema.sql (keep the two in step).
-- Text columns use the "C" collation so keys sort and compare byte-wise, as in SQLite.
CREATE TABLE IF NOT EXISTS kv (
    key TEXT COLLATE "C" PRIMARY KEY,
    value TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    connection TEXT COLLATE "C" NOT NULL,
    crm_id TEXT COLLATE "C" NOT NULL,
    data TEXT COLLATE "C" NOT NULL,            -- canonical Account as JSON
    data_hash TEXT COLLATE "C" NOT NULL,       -- hash of the read fields: a change means rescore
    crm_values TEXT COLLATE "C" NOT NULL,      -- current CRM values of the fields we write (canonical names)
    modified_at TEXT COLLATE "C",
    deleted INTEGER NOT NULL DEFAULT 0,
    needs_scoring INTEGER NOT NULL DEFAULT 1,
    first_seen TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (connection, crm_id)
);
CREATE INDEX IF NOT EXISTS accounts_needs_scoring ON accounts (connection, needs_scoring);
CREATE TABLE IF NOT EXISTS invoices (
    connection TEXT COLLATE "C" NOT NULL,
    crm_id TEXT COLLATE "C" NOT NULL,
    account_id TEXT COLLATE "C" NOT NULL,
    data TEXT COLLATE "C" NOT NULL,
    data_hash TEXT COLLATE "C" NOT NULL,
    modified_at TEXT COLLATE "C",
    deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (connection, crm_id)
);
CREATE INDEX IF NOT EXISTS invoices_by_account ON invoices (connection, account_id);
CREATE TABLE IF NOT EXISTS watermarks (
    connection TEXT COLLATE "C" NOT NULL,
    object TEXT COLLATE "C" NOT NULL,
    watermark TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (connection, object)
);
CREATE TABLE IF NOT EXISTS assessments (
    connection TEXT COLLATE "C" NOT NULL,
    account_id TEXT COLLATE "C" NOT NULL,
    as_of TEXT COLLATE "C" NOT NULL,
    policy_fingerprint TEXT COLLATE "C" NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    band TEXT COLLATE "C" NOT NULL,
    exposure TEXT COLLATE "C" NOT NULL,
    data TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (connection, account_id)
);
CREATE TABLE IF NOT EXISTS last_written (
    connection TEXT COLLATE "C" NOT NULL,
    account_id TEXT COLLATE "C" NOT NULL,
    field TEXT COLLATE "C" NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    run_id TEXT COLLATE "C" NOT NULL,
    written_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (connection, account_id, field)
);
CREATE TABLE IF NOT EXISTS task_ledger (
    connection TEXT COLLATE "C" NOT NULL,
    account_id TEXT COLLATE "C" NOT NULL,
    rule TEXT COLLATE "C" NOT NULL,
    episode INTEGER NOT NULL,
    state TEXT COLLATE "C" NOT NULL,           -- open | closed
    dedupe_key TEXT COLLATE "C" NOT NULL,
    crm_task_id TEXT COLLATE "C",
    level INTEGER NOT NULL DEFAULT 0,
    priority TEXT COLLATE "C",
    owner_id TEXT COLLATE "C",
    meta TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    opened_at TEXT COLLATE "C" NOT NULL,
    closed_at TEXT COLLATE "C",
    PRIMARY KEY (connection, account_id, rule)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT COLLATE "C" PRIMARY KEY,
    connection TEXT COLLATE "C" NOT NULL,
    trigger TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    started_at TEXT COLLATE "C" NOT NULL,
    ended_at TEXT COLLATE "C",
    dry_run INTEGER NOT NULL DEFAULT 0,
    report TEXT COLLATE "C" NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS runs_by_connection ON runs (connection, started_at);
CREATE TABLE IF NOT EXISTS audit (
    id BIGSERIAL PRIMARY KEY,
    run_id TEXT COLLATE "C" NOT NULL,
    connection TEXT COLLATE "C" NOT NULL,
    at TEXT COLLATE "C" NOT NULL,
    object TEXT COLLATE "C" NOT NULL,
    record_id TEXT COLLATE "C" NOT NULL,
    action TEXT COLLATE "C" NOT NULL,          -- update | task_create | task_escalate | task_complete | task_comment | conflict | held
    field TEXT COLLATE "C",
    old_value TEXT COLLATE "C",
    new_value TEXT COLLATE "C",
    cause TEXT COLLATE "C",
    crm_response TEXT COLLATE "C"
);
CREATE INDEX IF NOT EXISTS audit_by_record ON audit (connection, record_id);
CREATE TABLE IF NOT EXISTS failed_writes (
    connection TEXT COLLATE "C" NOT NULL,
    object TEXT COLLATE "C" NOT NULL,
    record_id TEXT COLLATE "C" NOT NULL,
    fields TEXT COLLATE "C" NOT NULL,
    error_code TEXT COLLATE "C" NOT NULL,
    message TEXT COLLATE "C" NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    first_failed TEXT COLLATE "C" NOT NULL,
    last_failed TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (connection, object, record_id)
);
CREATE TABLE IF NOT EXISTS quarantine (
    connection TEXT COLLATE "C" NOT NULL,
    object TEXT COLLATE "C" NOT NULL,
    record_id TEXT COLLATE "C" NOT NULL,
    reason TEXT COLLATE "C" NOT NULL,
    run_id TEXT COLLATE "C" NOT NULL,
    at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (connection, object, record_id)
);
CREATE TABLE IF NOT EXISTS leases (
    connection TEXT COLLATE "C" PRIMARY KEY,
    holder TEXT COLLATE "C" NOT NULL,
    acquired_at TEXT COLLATE "C" NOT NULL,
    heartbeat_at TEXT COLLATE "C" NOT NULL,
    expires_at TEXT COLLATE "C" NOT NULL
);

CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
