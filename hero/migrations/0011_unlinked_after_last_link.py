"""PostgreSQL: the events to link are found after the last link, by position.

``hero_unlinked`` read the events not linked yet through the partial index
``hero_stored_event_unlinked`` (``WHERE chain IS NULL``). Linking an event
leaves its old entry in that index until the table is vacuumed, and a bitmap
scan (what the planner chooses before the table's first ``ANALYZE``) never
drops such entries: every append then visited every event linked since the
last vacuum, a cost that grew with the store. Linked events are a prefix of
the store, so the events to link are those past the last link: the function
now reads them by a range of the primary key, from the last link on, a few
rows whatever the table's size or statistics.

The partial index goes too. A column named in an index's predicate keeps
PostgreSQL from updating a row in place (a HOT update), so every link also
wrote a new entry in each of the table's other indexes; without it, a link
leaves the indexes alone where the row's page has room.

Migrating back restores the index and 0009's definition. Nothing changes on
the other backends.
"""

from importlib import import_module

from django.db import migrations

from hero.migrations import _sql

#: 0009's definition, which migrating back restores.
_UNLINKED_0009 = import_module("hero.migrations.0009_unlinked_without_horizon").UNLINKED

_SIGNATURE = """
CREATE OR REPLACE FUNCTION hero_unlinked(lock_key bigint, wait boolean, own_marks boolean)
RETURNS TABLE (
    event_position bigint,
    event_originator uuid,
    event_version bigint,
    event_topic text,
    event_state bytea,
    mac bytea
) LANGUAGE plpgsql VOLATILE
-- Its plans are kept for the session from its first call, perhaps on a table
-- still empty or never analyzed: they must read by position, whatever the
-- statistics said then (a plain index scan also drops dead entries).
SET enable_seqscan = off SET enable_bitmapscan = off AS $$
"""

UNLINKED = (
    _SIGNATURE
    + """
DECLARE
    horizon bigint;
    returned bigint;
BEGIN
    IF wait THEN
        PERFORM pg_advisory_xact_lock(lock_key);
    ELSIF NOT pg_try_advisory_xact_lock(lock_key) THEN
        RETURN;
    END IF;
    -- The last link and the events after it, if their positions follow it
    -- one by one (each event's position less its rank is the last link's):
    -- then nothing is reserved below them, and the horizon need not be read.
    -- No rows when there is a gap, or no link yet.
    RETURN QUERY
        WITH last AS (
            SELECT e.id, e.chain FROM hero_stored_event e
             WHERE e.chain IS NOT NULL ORDER BY e.id DESC LIMIT 1
        ), pending AS (
            SELECT e.id, e.originator_id, e.originator_version, e.topic,
                   e.state, e.seal,
                   e.id - row_number() OVER (ORDER BY e.id) AS start
              FROM last l JOIN hero_stored_event e ON e.id > l.id
             WHERE e.chain IS NULL
        ), unbroken AS (
            -- One row, even without a link (an aggregate): then false.
            SELECT count(l.id) > 0 AND coalesce(bool_and(p.start = l.id), true)
                   AS yes
              FROM last l LEFT JOIN pending p ON true
        )
        (SELECT NULL::bigint, NULL::uuid, NULL::bigint, NULL::text, NULL::bytea,
                l.chain
           FROM last l, unbroken u WHERE u.yes)
        UNION ALL
        (SELECT p.id, p.originator_id, p.originator_version, p.topic, p.state,
                p.seal
           FROM pending p, unbroken u WHERE u.yes ORDER BY p.id);
    GET DIAGNOSTICS returned = ROW_COUNT;
    IF returned > 0 THEN
        RETURN;
    END IF;
    horizon := hero_horizon(own_marks);
    -- The last link (its position NULL), then the events to link after it
    -- up to the horizon (from the first position when nothing is linked),
    -- in one snapshot taken after the lock.
    RETURN QUERY
        WITH last AS (
            SELECT e.id, e.chain FROM hero_stored_event e
             WHERE e.chain IS NOT NULL ORDER BY e.id DESC LIMIT 1
        )
        (SELECT NULL::bigint, NULL::uuid, NULL::bigint, NULL::text, NULL::bytea,
                l.chain
           FROM last l)
        UNION ALL
        (SELECT e.id, e.originator_id, e.originator_version, e.topic, e.state,
                e.seal
           FROM hero_stored_event e
          WHERE e.id > coalesce((SELECT l.id FROM last l), '-9223372036854775808'::bigint)
            AND e.id <= horizon AND e.chain IS NULL
          ORDER BY e.id);
END
$$;
"""
)

DROP_UNLINKED_INDEX = "DROP INDEX IF EXISTS hero_stored_event_unlinked;"

#: 0003's index, as it was.
UNLINKED_INDEX = """
CREATE INDEX hero_stored_event_unlinked ON hero_stored_event (id)
    WHERE chain IS NULL;
"""


class Migration(migrations.Migration):
    dependencies = [("hero", "0010_payload_sealed_under_data_keys")]

    operations = [
        _sql.PostgreSQLOnly(UNLINKED, _UNLINKED_0009),
        _sql.PostgreSQLOnly(DROP_UNLINKED_INDEX, UNLINKED_INDEX),
    ]
