"""PostgreSQL: the events to link are read at most so many at a time.

``hero_unlinked(lock_key, wait, own_marks)`` returned every event committed
and not linked yet. Events are left unlinked for the ``hero_project`` worker
with ``HERO_PROJECTIONS = "async"``, and a worker that was stopped for a day
came back to a day's events: it read them all in one result and linked them
all in one transaction, its memory growing with the backlog.

``hero_unlinked(lock_key, wait, own_marks, max_rows, linked_to)`` returns the
last link and at most ``max_rows`` events after it (all of them when
``max_rows`` is NULL), the first ones in store order: linkers read and link a
backlog in batches, a transaction each (:func:`hero.store.chain.link_committed`).
The last link was read backward from the store's end, past every event not
linked yet, which each batch would do again: ``linked_to``, the last position
the batch before linked (NULL for the first), lets it be found forward from
there instead. The three-argument function stays, for processes still running
the code before this migration, and reads through the new one without a limit.

Migrating back restores 0011's definition and drops the new function.
Nothing changes on the other backends.
"""

from importlib import import_module

from django.db import migrations

from hero.migrations import _sql

#: 0011's definition, which migrating back restores.
_UNLINKED_0011 = import_module("hero.migrations.0011_unlinked_after_last_link").UNLINKED

#: The largest position: no bound.
MAX = 2**63 - 1

#: What both functions return: the last link (its position NULL), then the
#: events to link.
RETURNS = """
RETURNS TABLE (
    event_position bigint,
    event_originator uuid,
    event_version bigint,
    event_topic text,
    event_state bytea,
    mac bytea
)"""

UNLINKED_AT_MOST = f"""
CREATE FUNCTION hero_unlinked(
    lock_key bigint, wait boolean, own_marks boolean, max_rows integer,
    linked_to bigint
){RETURNS} LANGUAGE plpgsql VOLATILE
-- Its plans are kept for the session from its first call, perhaps on a table
-- still empty or never analyzed: they must read by position, whatever the
-- statistics said then (a plain index scan also drops dead entries).
SET enable_seqscan = off SET enable_bitmapscan = off AS $$
DECLARE
    horizon bigint;
    returned bigint;
    -- The last link is found below this: the first event not linked after
    -- linked_to, a position the caller knows is linked (the last of its
    -- batch before), read forward from there, past the few another linker
    -- may have linked since. Without it the last link is read backward from
    -- the store's end, past every event not linked yet.
    below bigint := {MAX};
BEGIN
    IF wait THEN
        PERFORM pg_advisory_xact_lock(lock_key);
    ELSIF NOT pg_try_advisory_xact_lock(lock_key) THEN
        RETURN;
    END IF;
    IF linked_to IS NOT NULL THEN
        below := coalesce(
            (SELECT e.id FROM hero_stored_event e
              WHERE e.id > linked_to AND e.chain IS NULL ORDER BY e.id LIMIT 1),
            {MAX}
        );
    END IF;
    -- The last link and the first events after it (LIMIT NULL: all), if
    -- their positions follow it one by one (each event's position less its
    -- rank is the last link's): then nothing is reserved below them, and the
    -- horizon need not be read. No rows when there is a gap, or no link yet.
    RETURN QUERY
        WITH last AS (
            SELECT e.id, e.chain FROM hero_stored_event e
             WHERE e.chain IS NOT NULL AND e.id < below
             ORDER BY e.id DESC LIMIT 1
        ), taken AS (
            -- Read from the last link on, by a range of positions (a plain
            -- join with the limit would scan the linked ones from the first).
            SELECT t.*
              FROM last l CROSS JOIN LATERAL (
                  SELECT e.id, e.originator_id, e.originator_version, e.topic,
                         e.state, e.seal
                    FROM hero_stored_event e
                   WHERE e.id > l.id AND e.chain IS NULL
                   ORDER BY e.id LIMIT max_rows
              ) t
        ), pending AS (
            SELECT f.*, f.id - row_number() OVER (ORDER BY f.id) AS start
              FROM taken f
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
    -- The last link (its position NULL), then the first events to link after
    -- it up to the horizon (from the first position when nothing is linked),
    -- in one snapshot taken after the lock.
    RETURN QUERY
        WITH last AS (
            SELECT e.id, e.chain FROM hero_stored_event e
             WHERE e.chain IS NOT NULL AND e.id < below
             ORDER BY e.id DESC LIMIT 1
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
          ORDER BY e.id LIMIT max_rows);
END
$$;
"""

#: The function of three arguments, for the code before this migration.
UNLINKED_ALL = f"""
CREATE OR REPLACE FUNCTION hero_unlinked(lock_key bigint, wait boolean, own_marks boolean){RETURNS} LANGUAGE sql VOLATILE AS $$
    SELECT * FROM hero_unlinked(lock_key, wait, own_marks, NULL::integer, NULL::bigint)
$$;
"""

DROP_UNLINKED_AT_MOST = (
    "DROP FUNCTION hero_unlinked(bigint, boolean, boolean, integer, bigint);"
)


class Migration(migrations.Migration):
    dependencies = [("hero", "0013_append_functions_lean")]

    operations = [
        _sql.PostgreSQLOnly(UNLINKED_AT_MOST, DROP_UNLINKED_AT_MOST),
        _sql.PostgreSQLOnly(UNLINKED_ALL, _UNLINKED_0011),
    ]
