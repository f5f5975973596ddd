"""PostgreSQL: ``hero_may_append_alongside`` in PL/pgSQL.

The function decides, at every append, whether a writer of events may append
alongside others (hero.store.ordering). As a SQL function it was planned again
at each call, about 40 µs of the server's time; PL/pgSQL keeps the plan of its
one query for the session. The answer is the same: the followers' rows are
read once, and the markers of a rebuild with them. Nothing changes on the other
backends.
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

    operations = [PostgreSQLOnly(MAY_APPEND_ALONGSIDE, MAY_APPEND_ALONGSIDE_IN_SQL)]
