"""The database schema, as an ordered list of migrations applied under ``PRAGMA user_version``.

Each migration runs with its version bump in one transaction, so a crash mid-upgrade leaves the
file at the old version. Never edit a shipped migration: append a new one.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: everything the gateway keeps.
    """
    CREATE TABLE devices (
        device_id     TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        driver        TEXT NOT NULL,
        is_managed    INTEGER NOT NULL DEFAULT 1,
        created_at    TEXT NOT NULL,
        online        INTEGER NOT NULL DEFAULT 0,
        pool_enabled  INTEGER NOT NULL DEFAULT 0,
        pool_size     INTEGER NOT NULL DEFAULT 3,
        capacity      INTEGER,
        code_lengths  TEXT,                       -- JSON [min, max] as reported or configured
        in_config     INTEGER NOT NULL DEFAULT 1, -- 0: removed from the YAML, kept for history
        programmable  INTEGER NOT NULL DEFAULT 1, -- 0: its driver cannot program codes (yet)
        pool_short_since TEXT                     -- since when fewer than size backups are set
    );

    -- Errors and warnings currently raised, on a device or on an access code.
    CREATE TABLE problems (
        owner_id    TEXT NOT NULL,
        owner_kind  TEXT NOT NULL CHECK (owner_kind IN ('device', 'access_code')),
        code        TEXT NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN ('error', 'warning')),
        message     TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        PRIMARY KEY (owner_id, code)
    ) WITHOUT ROWID;

    CREATE TABLE access_codes (
        access_code_id  TEXT PRIMARY KEY,
        device_id       TEXT NOT NULL REFERENCES devices(device_id),
        name            TEXT,
        code            TEXT NOT NULL,
        starts_at       TEXT,
        ends_at         TEXT,
        status          TEXT NOT NULL CHECK (status IN ('unset', 'setting', 'set', 'removing')),
        created_at      TEXT NOT NULL,
        is_backup       INTEGER NOT NULL DEFAULT 0,
        backup_state    TEXT CHECK (backup_state IN ('pooled', 'pulled')),
        pulled_for      TEXT,     -- on a pulled backup: the original's id
        pulled_backup_id TEXT,    -- on an original: its pulled backup's id
        allow_external_modification INTEGER NOT NULL DEFAULT 0,
        slot            INTEGER,  -- the slot it occupies or is being written to
        deleting        INTEGER NOT NULL DEFAULT 0,
        on_lock         INTEGER NOT NULL DEFAULT 0,  -- verified on the lock since last cleared
        status_since    TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        retry_at        TEXT
    );
    -- A PIN lives once per lock, a slot holds one managed code, a code has one backup.
    CREATE UNIQUE INDEX access_codes_pin ON access_codes (device_id, code);
    CREATE UNIQUE INDEX access_codes_slot ON access_codes (device_id, slot)
        WHERE slot IS NOT NULL;
    CREATE UNIQUE INDEX access_codes_pulled_for ON access_codes (pulled_for)
        WHERE pulled_for IS NOT NULL;
    CREATE INDEX access_codes_device ON access_codes (device_id, is_backup, backup_state);

    -- The lock's table as last observed, so unmanaged codes and duplicates survive a restart.
    CREATE TABLE observed_slots (
        device_id  TEXT NOT NULL REFERENCES devices(device_id),
        slot       INTEGER NOT NULL,
        code       TEXT,          -- NULL: empty or unreadable (see state)
        state      TEXT NOT NULL CHECK (state IN ('code', 'empty', 'occupied', 'unknown')),
        PRIMARY KEY (device_id, slot)
    ) WITHOUT ROWID;

    -- The outbox: every event is stored with the change that caused it, published after.
    CREATE TABLE events (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id        TEXT NOT NULL UNIQUE,
        event_type      TEXT NOT NULL,
        occurred_at     TEXT NOT NULL,
        device_id       TEXT,
        access_code_id  TEXT,
        body            TEXT NOT NULL,
        published       INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX events_unpublished ON events (seq) WHERE published = 0;
    CREATE INDEX events_occurred ON events (occurred_at);
    CREATE INDEX events_device ON events (device_id, seq);
    CREATE INDEX events_code ON events (access_code_id, seq);

    -- Replies to create/update/delete/pull requests, kept 24 h for retried deliveries.
    CREATE TABLE idempotency (
        key         TEXT PRIMARY KEY,
        endpoint    TEXT NOT NULL,
        reply       TEXT NOT NULL,
        created_at  TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX idempotency_created ON idempotency (created_at);
    """,
    # 2: every PIN the gateway has written to a slot, until the lock is seen without it (no PIN
    # outlives its code); idempotency records remember what they answered, not only the key.
    """
    CREATE TABLE slot_writes (
        device_id       TEXT NOT NULL,
        slot            INTEGER NOT NULL,
        code            TEXT NOT NULL,
        access_code_id  TEXT NOT NULL,
        answered        INTEGER NOT NULL DEFAULT 0,  -- 1: the lock has answered since
        PRIMARY KEY (device_id, slot, code)
    ) WITHOUT ROWID;
    CREATE INDEX slot_writes_code ON slot_writes (access_code_id);
    -- What a code's row says it holds was written by the gateway too.
    INSERT INTO slot_writes (device_id, slot, code, access_code_id)
        SELECT device_id, slot, code, access_code_id FROM access_codes
        WHERE slot IS NOT NULL;
    ALTER TABLE idempotency ADD COLUMN fingerprint TEXT;  -- NULL: stored before version 2
    """,
    # 3: contract section 11. One-time and shared codes; what a pending update replaces (for
    # pending_mutations); whether a lock's stack reports who opened the door; unmanaged codes
    # the gateway was asked to clear (their ids are derived from device, slot and PIN).
    """
    ALTER TABLE access_codes ADD COLUMN is_one_time_use INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE access_codes ADD COLUMN common_code_key TEXT;
    ALTER TABLE access_codes ADD COLUMN code_from TEXT;         -- the PIN an update replaces
    ALTER TABLE access_codes ADD COLUMN code_changed_at TEXT;
    ALTER TABLE access_codes ADD COLUMN window_from TEXT;       -- JSON: the window it replaces
    ALTER TABLE access_codes ADD COLUMN window_changed_at TEXT;
    CREATE INDEX access_codes_common_key ON access_codes (common_code_key)
        WHERE common_code_key IS NOT NULL;
    ALTER TABLE devices ADD COLUMN entry_events INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE unmanaged_removals (
        device_id     TEXT NOT NULL,
        slot          INTEGER NOT NULL,
        code          TEXT NOT NULL,
        access_code_id TEXT NOT NULL,
        requested_at  TEXT NOT NULL,
        PRIMARY KEY (device_id, slot)
    ) WITHOUT ROWID;
    """,
    # 4: an unmanaged code's clear backs off like a managed code's command when the lock keeps
    # refusing it.
    """
    ALTER TABLE unmanaged_removals ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE unmanaged_removals ADD COLUMN retry_at TEXT;
    """,
    # 5: which stored replies show which access codes, so a code's PIN can be scrubbed from
    # them once it has ended (issue 13): the history keeps what happened, not the secret.
    """
    CREATE TABLE idempotency_codes (
        access_code_id  TEXT NOT NULL,
        key             TEXT NOT NULL,
        PRIMARY KEY (access_code_id, key)
    ) WITHOUT ROWID;
    """,
    # 6: small facts the gateway keeps between runs; "clock_mark": the latest time it saw
    # (gateway.clock.SteadyClock: a stale clock after a reboot is not believed).
    """
    CREATE TABLE meta (
        key    TEXT PRIMARY KEY,
        value  TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
)
