-- crm-risk-connector state store, schema version 1. Applied by every backend.
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    connection TEXT NOT NULL,
    crm_id TEXT NOT NULL,
    data TEXT NOT NULL,            -- canonical Account as JSON
    data_hash TEXT NOT NULL,       -- hash of the read fields: a change means rescore
    crm_values TEXT NOT NULL,      -- current CRM values of the fields we write (canonical names)
    modified_at TEXT,
    deleted INTEGER NOT NULL DEFAULT 0,
    needs_scoring INTEGER NOT NULL DEFAULT 1,
    first_seen TEXT NOT NULL,
    PRIMARY KEY (connection, crm_id)
);
CREATE INDEX IF NOT EXISTS accounts_needs_scoring ON accounts (connection, needs_scoring);
CREATE TABLE IF NOT EXISTS invoices (
    connection TEXT NOT NULL,
    crm_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    data TEXT NOT NULL,
    data_hash TEXT NOT NULL,
    modified_at TEXT,
    deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (connection, crm_id)
);
CREATE INDEX IF NOT EXISTS invoices_by_account ON invoices (connection, account_id);
CREATE TABLE IF NOT EXISTS watermarks (
    connection TEXT NOT NULL,
    object TEXT NOT NULL,
    watermark TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (connection, object)
);
CREATE TABLE IF NOT EXISTS assessments (
    connection TEXT NOT NULL,
    account_id TEXT NOT NULL,
    as_of TEXT NOT NULL,
    policy_fingerprint TEXT NOT NULL,
    score REAL NOT NULL,
    band TEXT NOT NULL,
    exposure TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (connection, account_id)
);
CREATE TABLE IF NOT EXISTS last_written (
    connection TEXT NOT NULL,
    account_id TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    run_id TEXT NOT NULL,
    written_at TEXT NOT NULL,
    PRIMARY KEY (connection, account_id, field)
);
CREATE TABLE IF NOT EXISTS task_ledger (
    connection TEXT NOT NULL,
    account_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    episode INTEGER NOT NULL,
    state TEXT NOT NULL,           -- open | closed
    dedupe_key TEXT NOT NULL,
    crm_task_id TEXT,
    level INTEGER NOT NULL DEFAULT 0,
    priority TEXT,
    owner_id TEXT,
    meta TEXT NOT NULL DEFAULT '{}',
    opened_at TEXT NOT NULL,
    closed_at TEXT,
    PRIMARY KEY (connection, account_id, rule)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    connection TEXT NOT NULL,
    trigger TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    dry_run INTEGER NOT NULL DEFAULT 0,
    report TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS runs_by_connection ON runs (connection, started_at);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    connection TEXT NOT NULL,
    at TEXT NOT NULL,
    object TEXT NOT NULL,
    record_id TEXT NOT NULL,
    action TEXT NOT NULL,          -- update | task_create | task_escalate | task_complete | task_comment | conflict | held
    field TEXT,
    old_value TEXT,
    new_value TEXT,
    cause TEXT,
    crm_response TEXT
);
CREATE INDEX IF NOT EXISTS audit_by_record ON audit (connection, record_id);
CREATE TABLE IF NOT EXISTS failed_writes (
    connection TEXT NOT NULL,
    object TEXT NOT NULL,
    record_id TEXT NOT NULL,
    fields TEXT NOT NULL,
    error_code TEXT NOT NULL,
    message TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    first_failed TEXT NOT NULL,
    last_failed TEXT NOT NULL,
    PRIMARY KEY (connection, object, record_id)
);
CREATE TABLE IF NOT EXISTS quarantine (
    connection TEXT NOT NULL,
    object TEXT NOT NULL,
    record_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    run_id TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (connection, object, record_id)
);
CREATE TABLE IF NOT EXISTS leases (
    connection TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
