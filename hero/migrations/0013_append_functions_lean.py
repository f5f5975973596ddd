"""PostgreSQL: the two functions every append calls, doing less on the server.

- ``hero_reserve_positions(n)`` takes one position, the common case, with one
  ``nextval`` instead of a query over ``generate_series`` (planned again at
  every call, as ``n`` is a parameter), and names the events' sequence as this
  migration found it instead of looking it up at every call. The name is kept
  without its schema, so that it is found where the table is, as the table's
  own name is. Several positions are taken as before.
- ``hero_lock_for_append(keys, markers, applies_inline, wait)`` takes the
  shared ``ROW EXCLUSIVE`` lock first and reads the followers' rows once,
  under it, in one function: before, it read them, took the lock, read them
  again (what a writer holding the table ``EXCLUSIVE`` meanwhile may have
  changed) and called a second function to do so. When the rows say the
  writer must append alone, the shared lock is let go with the block that
  took it and the ``EXCLUSIVE`` one taken, as before.

What each returns, the locks each takes and the order they are taken in are
as before: writers running either definition agree. Measured with
``pgbench`` (each call in a transaction of its own), the first 80 µs and the
second 40 µs less of the server's time per call. Migrating back restores
0005's and 0006's definitions. Nothing changes on the other backends.
"""

from importlib import import_module

from django.db import migrations

from hero.migrations._sql import PostgreSQLOnly, _statements

#: The advisory locks' class id: "hero" in ASCII (hero.store.ordering.LOCK_CLASS).
LOCK_CLASS = 1751478895

#: Marks hold a position modulo this.
WRAP = 2**32

#: hero.store.positions.CURRENT: a follower that has applied every event.
CURRENT = -1

# The function is created by a block that names the sequence as found now;
# mod() rather than the % operator, which format() would read.
RESERVE = f"""
DO $migration$
DECLARE
    sequence text := (
        SELECT relname FROM pg_class
         WHERE oid = pg_get_serial_sequence('hero_stored_event', 'id')::regclass
    );
BEGIN
    EXECUTE format($function$
CREATE OR REPLACE FUNCTION hero_reserve_positions(n integer) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    positions bigint[];
    low bigint;
BEGIN
    PERFORM pg_advisory_lock({LOCK_CLASS}, 0);
    BEGIN
        IF n = 1 THEN
            positions := ARRAY[nextval(%1$L)];
        ELSE
            SELECT array_agg(nextval(%1$L) ORDER BY g) INTO positions
            FROM generate_series(1, n) AS g;
        END IF;
        IF mod(positions[1], {WRAP}) = 0 THEN
            positions := positions[2:n] || nextval(%1$L);
        END IF;
        -- The low 32 bits, as the integer key that carries them.
        low := mod(positions[1], {WRAP});
        PERFORM pg_advisory_xact_lock(
            {LOCK_CLASS},
            (CASE WHEN low >= {WRAP // 2} THEN low - {WRAP} ELSE low END)::integer
        );
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        PERFORM pg_advisory_unlock({LOCK_CLASS}, 0);
        RAISE;
    END;
    PERFORM pg_advisory_unlock({LOCK_CLASS}, 0);
    IF n = 1 THEN
        RETURN NEXT positions[1];
    ELSE
        RETURN QUERY SELECT unnest(positions);
    END IF;
END
$$;
$function$, sequence);
END
$migration$;
"""

LOCK_FOR_APPEND = f"""
CREATE OR REPLACE FUNCTION hero_lock_for_append(
    keys text[], markers text[], applies_inline boolean, wait text
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    callers text := current_setting('lock_timeout');
    current_rows integer;
    marked boolean;
BEGIN
    PERFORM set_config('lock_timeout', wait, true);
    BEGIN
        LOCK TABLE hero_stored_event IN ROW EXCLUSIVE MODE;
        IF cardinality(keys) > 0 THEN
            -- Read under the lock, in a snapshot of its own: whatever a
            -- writer that held the table EXCLUSIVE changed is committed.
            SELECT count(*) FILTER (
                       WHERE application_name = ANY(keys)
                         AND notification_id = {CURRENT}
                   ),
                   coalesce(bool_or(application_name = ANY(markers)), false)
              INTO current_rows, marked
              FROM hero_tracking
             WHERE application_name = ANY(keys || markers);
            IF (applies_inline AND (current_rows <> cardinality(keys) OR marked))
               OR (NOT applies_inline AND current_rows <> 0) THEN
                -- Append alone: let go of the shared lock with this block.
                RAISE EXCEPTION USING ERRCODE = 'HR001';
            END IF;
        END IF;
        PERFORM set_config('lock_timeout', callers, true);
        RETURN true;
    EXCEPTION WHEN SQLSTATE 'HR001' THEN
        NULL;
    END;
    LOCK TABLE hero_stored_event IN EXCLUSIVE MODE;
    PERFORM set_config('lock_timeout', callers, true);
    RETURN false;
END
$$;
"""


def _earlier(migration: str, name: str, function: str) -> str:
    """The definition of ``function`` in an earlier migration's script, made
    to replace the one in place."""
    script: str = getattr(import_module(f"hero.migrations.{migration}"), name)
    found: list[str] = [s for s in _statements(script) if f"FUNCTION {function}(" in s]
    (definition,) = found
    return definition.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


RESERVE_0006 = _earlier(
    "0006_positions_past_32_bits", "RESERVE_AND_HORIZON", "hero_reserve_positions"
)
LOCK_FOR_APPEND_0005 = _earlier(
    "0005_lock_for_append_timeout", "LOCK_FOR_APPEND_WAITING", "hero_lock_for_append"
)


class Migration(migrations.Migration):
    dependencies = [("hero", "0012_horizon_of_the_writer_alone")]

    operations = [
        PostgreSQLOnly(RESERVE, RESERVE_0006),
        PostgreSQLOnly(LOCK_FOR_APPEND, LOCK_FOR_APPEND_0005),
    ]
