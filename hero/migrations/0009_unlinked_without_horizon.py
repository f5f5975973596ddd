"""PostgreSQL: ``hero_unlinked`` reads the horizon only past a gap.

The horizon (``hero_horizon``) reads ``pg_locks`` for the positions still
reserved, which takes every lock partition of the server for a moment: about
a tenth of a millisecond of the server's time at every append, shared with
everybody who takes a lock meanwhile. A linker needs it only where positions
are missing. When the events not linked yet follow the last link without a
gap, every position up to them is committed, and none can be reserved below
them any more (positions are given out in increasing order, and the last link
was made when every position up to it had been settled). The function then
returns them at once; otherwise it reads the horizon and the events again, as
0007's definition does.

Both reads are one statement each after the linker's lock, so each sees one
snapshot: the first decides from the very rows it returns.

Migrating back restores 0007's definition. Nothing changes on the other
backends.
"""

from django.db import migrations

from hero.migrations._sql import PostgreSQLOnly

_SIGNATURE = """
CREATE OR REPLACE FUNCTION hero_unlinked(lock_key bigint, wait boolean, own_marks boolean)
RETURNS TABLE (
    event_position bigint,
    event_originator uuid,
    event_version bigint,
    event_topic text,
    event_state bytea,
    mac bytea
) LANGUAGE plpgsql VOLATILE AS $$
"""

_LOCK = """
BEGIN
    IF wait THEN
        PERFORM pg_advisory_xact_lock(lock_key);
    ELSIF NOT pg_try_advisory_xact_lock(lock_key) THEN
        RETURN;
    END IF;
"""

_BELOW_HORIZON = """
    horizon := hero_horizon(own_marks);
    -- The last link (its position NULL), then the events to link, in one
    -- snapshot taken after the lock.
    RETURN QUERY
        (SELECT NULL::bigint, NULL::uuid, NULL::bigint, NULL::text, NULL::bytea,
                e.chain
           FROM hero_stored_event e
          WHERE e.chain IS NOT NULL
          ORDER BY e.id DESC LIMIT 1)
        UNION ALL
        (SELECT e.id, e.originator_id, e.originator_version, e.topic, e.state,
                e.seal
           FROM hero_stored_event e
          WHERE e.chain IS NULL AND e.id <= horizon
          ORDER BY e.id);
END
$$;
"""

UNLINKED = (
    _SIGNATURE
    + """
DECLARE
    horizon bigint;
    returned bigint;
"""
    + _LOCK
    + """
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
              FROM hero_stored_event e WHERE e.chain IS NULL
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
"""
    + _BELOW_HORIZON
)

#: 0007's definition, as it was.
UNLINKED_WITH_HORIZON = (
    _SIGNATURE
    + """
DECLARE
    horizon bigint;
"""
    + _LOCK
    + _BELOW_HORIZON
)


class Migration(migrations.Migration):
    dependencies = [("hero", "0008_data_keys_with_events")]

    operations = [PostgreSQLOnly(UNLINKED, UNLINKED_WITH_HORIZON)]
