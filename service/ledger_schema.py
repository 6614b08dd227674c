"""The ledger's SQLite schema as numbered migrations, applied in order at open.

A schema change is a new entry at the end, never an edit of an old one: files written by
older versions are brought forward one step at a time by `service.ledger.Ledger`.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """
            CREATE TABLE ledger (
                id INTEGER PRIMARY KEY,
                ts REAL NOT NULL,
                request_id TEXT NOT NULL,
                tenant TEXT NOT NULL,
                namespace TEXT NOT NULL,
                feature TEXT,
                kind TEXT NOT NULL,
                model_requested TEXT NOT NULL,
                model_used TEXT NOT NULL,
                route_tier TEXT,
                route_reasons TEXT,
                input_tokens INTEGER NOT NULL,
                output_tokens INTEGER NOT NULL,
                cache_creation_tokens INTEGER NOT NULL,
                cache_read_tokens INTEGER NOT NULL,
                cost_micros INTEGER NOT NULL,
                baseline_micros INTEGER NOT NULL,
                saved_exact_micros INTEGER NOT NULL,
                saved_semantic_micros INTEGER NOT NULL,
                saved_routing_micros INTEGER NOT NULL,
                saved_prompt_cache_micros INTEGER NOT NULL,
                saved_batch_micros INTEGER NOT NULL,
                priced INTEGER NOT NULL,
                similarity REAL,
                latency_ms REAL NOT NULL,
                entry_id INTEGER,
                status INTEGER NOT NULL,
                error TEXT,
                price_version TEXT
            )
            """,
            "CREATE INDEX ledger_ts ON ledger (ts)",
            "CREATE INDEX ledger_tenant_ts ON ledger (tenant, ts)",
        ),
    ),
    (
        2,
        (
            """
            CREATE TABLE alerts (
                id INTEGER PRIMARY KEY,
                kind TEXT NOT NULL,
                scope TEXT NOT NULL,
                period TEXT NOT NULL,
                subject TEXT NOT NULL,
                message TEXT NOT NULL,
                value REAL NOT NULL,
                threshold REAL NOT NULL,
                created_at REAL NOT NULL,
                delivered_at REAL,
                delivery_attempts INTEGER NOT NULL DEFAULT 0,
                delivery_error TEXT,
                UNIQUE (kind, scope, period, subject)
            )
            """,
            "CREATE INDEX alerts_created ON alerts (created_at)",
        ),
    ),
    (
        3,
        (
            # Cost levers applied to a miss, as estimated token counts (not money, so the
            # baseline - cost = savings arithmetic is untouched).
            "ALTER TABLE ledger ADD COLUMN context_tokens_removed INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE ledger ADD COLUMN whitespace_tokens_saved INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE ledger ADD COLUMN cache_breakpoints INTEGER NOT NULL DEFAULT 0",
        ),
    ),
    (
        4,
        (
            # The x-promptcache-task hint and the max_tokens sent, for the report's
            # "max_tokens far above the task's table value" opportunities.
            "ALTER TABLE ledger ADD COLUMN task TEXT",
            "ALTER TABLE ledger ADD COLUMN max_tokens INTEGER",
        ),
    ),
    (
        5,
        (
            # A batch step that is retried after its rows were written must not write them
            # again (`Ledger.record_new` looks each request id up).
            "CREATE INDEX ledger_request ON ledger (request_id)",
        ),
    ),
    (
        6,
        (
            # Misses sent upstream whose own row is not written yet, each as the row to write
            # if the process dies first (`Ledger.note_upstream`, `settle_interrupted`). A row
            # for the same request, however written, settles it in the same transaction.
            """
            CREATE TABLE upstream_pending (
                request_id TEXT PRIMARY KEY,
                ts REAL NOT NULL,
                row TEXT NOT NULL
            )
            """,
            """
            CREATE TRIGGER ledger_settles_pending AFTER INSERT ON ledger
            BEGIN
                DELETE FROM upstream_pending WHERE request_id = NEW.request_id;
            END
            """,
        ),
    ),
    (
        7,
        (
            # A hit's saving is proven by the row that paid for its entry (`Totals.
            # stated_micros`): that row is looked up by entry id.
            "CREATE INDEX ledger_entry ON ledger (entry_id)",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
