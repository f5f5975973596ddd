"""PostgreSQL: the statements of every append, in PL/pgSQL, whose plans the
server keeps for the session.

- ``hero_may_append_alongside`` decides, at every append, whether a writer
  of events may append alongside others (hero.store.ordering). As a SQL
  function it was planned again at each call, about 40 µs of the server's
  time. Its answers are the same: the followers' rows are read once, and the
  markers of a rebuild with them.
- ``hero_unlinked(lock_key, wait, own_marks)`` takes the linker's lock, reads
  the horizon and returns the last link and the events to link after it
  (hero.store.chain.Unlinked): what two statements did, the second a union
  planned at every call. The events are read by a statement of the function's
  own after the lock, which in READ COMMITTED sees what the linker before
  committed. No rows: the lock was not free (without ``wait``), or there is
  nothing to link.

Nothing changes on the other backends.
"""

from django.db import migrations

from hero.migrations._sql import PostgreSQLOnly

MAY_APPEND_ALONGSIDE = """
CREATE OR REPLACE FUNCTION hero_may_append_alongside(
    keys text[], markers text[], applies_inline boolean
) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    current_rows integer;
    marked boolean;
BEGIN
    IF cardinality(keys) = 0 THEN
        RETURN true;
    END IF;
    SELECT count(*) FILTER (
               WHERE application_name = ANY(keys) AND notification_id = -1
           ),
           coalesce(bool_or(application_name = ANY(markers)), false)
      INTO current_rows, marked
      FROM hero_tracking
     WHERE application_name = ANY(keys || markers);
    IF applies_inline THEN
        RETURN current_rows = cardinality(keys) AND NOT marked;
    END IF;
    RETURN current_rows = 0;
END
$$;
"""

UNLINKED = """
CREATE FUNCTION hero_unlinked(lock_key bigint, wait boolean, own_marks boolean)
RETURNS TABLE (
    event_position bigint,
    event_originator uuid,
    event_version bigint,
    event_topic text,
    event_state bytea,
    mac bytea
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    horizon bigint;
BEGIN
    IF wait THEN
        PERFORM pg_advisory_xact_lock(lock_key);
    ELSIF NOT pg_try_advisory_xact_lock(lock_key) THEN
        RETURN;
    END IF;
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

NO_UNLINKED = """
DROP FUNCTION hero_unlinked(bigint, boolean, boolean);
"""

#: 0003's definition, as it was.
MAY_APPEND_ALONGSIDE_IN_SQL = """
CREATE OR REPLACE FUNCTION hero_may_append_alongside(
    keys text[], markers text[], applies_inline boolean
) RETURNS boolean LANGUAGE sql VOLATILE AS $$
    SELECT CASE
        WHEN cardinality(keys) = 0 THEN true
        WHEN applies_inline THEN (
            SELECT count(*) FROM hero_tracking
            WHERE application_name = ANY(keys) AND notification_id = -1
        ) = cardinality(keys) AND NOT EXISTS (
            SELECT 1 FROM hero_tracking WHERE application_name = ANY(markers)
        )
        ELSE NOT EXISTS (
            SELECT 1 FROM hero_tracking
            WHERE application_name = ANY(keys) AND notification_id = -1
        )
    END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("hero", "0006_positions_past_32_bits")]

    operations = [
        PostgreSQLOnly(MAY_APPEND_ALONGSIDE, MAY_APPEND_ALONGSIDE_IN_SQL),
        PostgreSQLOnly(UNLINKED, NO_UNLINKED),
    ]
