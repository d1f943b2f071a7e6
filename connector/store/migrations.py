"""The schema version, and the SQL steps that bring an older store up to it."""

from __future__ import annotations

SCHEMA_VERSION = 4

# Steps from version N-1 to N, in SQL both backends accept; `{text}` is the backend's text type.
# A fresh store applies schema*.sql (version 1), then every step.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        # Quarantine holds the account a bad record belongs to, and says what and since when.
        "ALTER TABLE quarantine ADD COLUMN account_id {text}",
        "ALTER TABLE quarantine ADD COLUMN name {text}",
        "ALTER TABLE quarantine ADD COLUMN rule {text}",
        "ALTER TABLE quarantine ADD COLUMN field {text}",
        "ALTER TABLE quarantine ADD COLUMN value {text}",
        "ALTER TABLE quarantine ADD COLUMN first_seen {text}",
        "UPDATE quarantine SET first_seen = at WHERE first_seen IS NULL",
        "CREATE INDEX IF NOT EXISTS quarantine_by_account ON quarantine (connection, account_id)",
        # A field the CRM refused for one account (e.g. a picklist value it lacks): not resent
        # until the mapping or the CRM field changed (`guard` fingerprints both).
        "CREATE TABLE IF NOT EXISTS field_blocks ("
        " connection {text} NOT NULL, account_id {text} NOT NULL, field {text} NOT NULL,"
        " value {text} NOT NULL, error_code {text} NOT NULL, message {text} NOT NULL,"
        " guard {text} NOT NULL, attempts INTEGER NOT NULL DEFAULT 1,"
        " first_failed {text} NOT NULL, last_failed {text} NOT NULL,"
        " PRIMARY KEY (connection, account_id, field))",
    ),
    3: (
        # Workers sharing a PostgreSQL store: who ran each run, when each connection is next
        # due (claimed with FOR UPDATE SKIP LOCKED), and the workers' heartbeats.
        "ALTER TABLE runs ADD COLUMN worker {text}",
        "CREATE TABLE IF NOT EXISTS schedule ("
        " connection {text} PRIMARY KEY, next_due_at {text} NOT NULL,"
        " last_claimed_by {text}, last_claimed_at {text}, updated_at {text} NOT NULL)",
        "CREATE INDEX IF NOT EXISTS schedule_by_due ON schedule (next_due_at)",
        "CREATE TABLE IF NOT EXISTS workers ("
        " worker_id {text} PRIMARY KEY, host {text} NOT NULL, pid INTEGER NOT NULL,"
        " started_at {text} NOT NULL, heartbeat_at {text} NOT NULL, expires_at {text} NOT NULL,"
        " capacity INTEGER NOT NULL, running INTEGER NOT NULL DEFAULT 0)",
    ),
    4: (
        # The book at the end of each run, for the report's movement figures: totals by band
        # (kept 400 days) and each account's band, score and exposure (kept for the newest runs
        # and the first run of each month; see `prune_snapshots`).
        "CREATE TABLE IF NOT EXISTS portfolio_snapshots ("
        " connection {text} NOT NULL, run_id {text} NOT NULL, as_of {text} NOT NULL,"
        " taken_at {text} NOT NULL, home_currency {text}, accounts INTEGER NOT NULL,"
        " summary {text} NOT NULL, detail INTEGER NOT NULL DEFAULT 1,"
        " PRIMARY KEY (connection, run_id))",
        "CREATE INDEX IF NOT EXISTS portfolio_snapshots_by_time"
        " ON portfolio_snapshots (connection, as_of, taken_at)",
        "CREATE TABLE IF NOT EXISTS snapshot_accounts ("
        " connection {text} NOT NULL, run_id {text} NOT NULL, account_id {text} NOT NULL,"
        " band {text} NOT NULL, score DOUBLE PRECISION NOT NULL, exposure {text} NOT NULL,"
        " PRIMARY KEY (connection, run_id, account_id))",
    ),
}
