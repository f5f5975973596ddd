"""PostgreSQL: reserving and following positions past 2^31.

A writer marks the first position it reserves with an advisory lock whose
second key is a 32-bit integer. ``hero_reserve_positions`` passed the position
itself, so from position 2^31 on every write failed ("integer out of range").
Now the mark holds the position's low 32 bits, and ``hero_horizon`` reads the
position back as the highest one at or below the sequence's last value that
has them: every reservation still open is recent, far closer than 2^32 to that
value. Below 2^31 the marks are the same as before, so writers and followers
running the code of either migration agree while this one is applied.

A first position whose low 32 bits are all zero is never handed out (it stays
a gap, as a rolled-back write leaves one): its mark would read as the short
gate both functions take, ``(class, 0)``, which the horizon leaves out.

The horizon reads the sequence's last value with ``pg_sequence_last_value``
(a statement built at run time only before the first value is given out).

Migrating back leaves these definitions in place; below 2^31 they do what the
earlier ones did. Nothing changes on the other backends.
"""

from django.db import migrations

from hero.migrations._sql import PostgreSQLOnly

#: The advisory locks' class id: "hero" in ASCII (hero.store.ordering.LOCK_CLASS).
LOCK_CLASS = 1751478895

#: Marks hold a position modulo this.
WRAP = 2**32

RESERVE_AND_HORIZON = f"""
CREATE OR REPLACE FUNCTION hero_reserve_positions(n integer) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    sequence regclass := pg_get_serial_sequence('hero_stored_event', 'id');
    positions bigint[];
    low bigint;
BEGIN
    PERFORM pg_advisory_lock({LOCK_CLASS}, 0);
    BEGIN
        SELECT array_agg(nextval(sequence) ORDER BY g) INTO positions
        FROM generate_series(1, n) AS g;
        IF positions[1] % {WRAP} = 0 THEN
            positions := positions[2:n] || nextval(sequence);
        END IF;
        -- The low 32 bits, as the integer key that carries them.
        low := positions[1] % {WRAP};
        PERFORM pg_advisory_xact_lock(
            {LOCK_CLASS},
            (CASE WHEN low >= {WRAP // 2} THEN low - {WRAP} ELSE low END)::integer
        );
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        PERFORM pg_advisory_unlock({LOCK_CLASS}, 0);
        RAISE;
    END;
    PERFORM pg_advisory_unlock({LOCK_CLASS}, 0);
    RETURN QUERY SELECT unnest(positions);
END
$$;
CREATE OR REPLACE FUNCTION hero_horizon(own_marks boolean DEFAULT false)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    sequence regclass := pg_get_serial_sequence('hero_stored_event', 'id');
    horizon bigint;
    last bigint;
BEGIN
    PERFORM pg_advisory_lock({LOCK_CLASS}, 0);
    BEGIN
        -- The last value given out (NULL when the next is the sequence's
        -- first, or was set to be: then one below it).
        last := pg_sequence_last_value(sequence);
        IF last IS NULL THEN
            EXECUTE format('SELECT last_value - 1 FROM %s', sequence) INTO last;
        END IF;
        -- Each mark's position: the highest at or below the last value given
        -- out that has the mark's low 32 bits.
        SELECT min(last - (last - objid::bigint) % {WRAP}) - 1 INTO horizon
        FROM pg_locks
        WHERE locktype = 'advisory' AND classid = {LOCK_CLASS} AND objsubid = 2
          AND objid <> 0 AND (own_marks OR pid <> pg_backend_pid()) AND database = (
            SELECT oid FROM pg_database WHERE datname = current_database()
          );
        IF horizon IS NULL THEN
            -- Rows written with ids of their own, past the sequence.
            SELECT greatest(last, max(id)) INTO horizon FROM hero_stored_event;
        END IF;
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        PERFORM pg_advisory_unlock({LOCK_CLASS}, 0);
        RAISE;
    END;
    PERFORM pg_advisory_unlock({LOCK_CLASS}, 0);
    PERFORM set_config('hero.horizon', horizon::text, false);
    RETURN horizon;
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("hero", "0005_lock_for_append_timeout")]

    operations = [PostgreSQLOnly(RESERVE_AND_HORIZON, migrations.RunSQL.noop)]
