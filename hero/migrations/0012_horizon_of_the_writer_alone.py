"""PostgreSQL: the writer holding the store alone reads the horizon at its end.

The horizon stops a reader below every position still marked by another
transaction. A transaction that ends lets go of its table locks first and of
its advisory locks (the marks) an instant later, so a writer kept waiting for
the store's ``EXCLUSIVE`` lock (one that catches a read model up) could get it
while the mark of the writer before it was still there: it then read the
events it had missed up to the horizon, below that writer's event, though
the event was committed, and left the read model current without it. An
entry went missing from the ledger that way under load.

Holding the ``EXCLUSIVE`` lock, a transaction knows that every other writer of
events has ended (each reserves its positions under the table's lock), so
``hero_horizon`` now leaves out the marks of other transactions for it, and
reads only its own, where asked. Every other reader's horizon is as before.

Migrating back restores 0006's definition. Nothing changes on the other
backends.
"""

from importlib import import_module

from django.db import migrations

from hero.migrations._sql import PostgreSQLOnly

#: The advisory locks' class id: "hero" in ASCII (hero.store.ordering.LOCK_CLASS).
LOCK_CLASS = 1751478895

#: Marks hold a position modulo this.
WRAP = 2**32

#: 0006's definitions (hero_reserve_positions is unchanged by this one).
_HORIZON_0006 = import_module(
    "hero.migrations.0006_positions_past_32_bits"
).RESERVE_AND_HORIZON

HORIZON = f"""
CREATE OR REPLACE FUNCTION hero_horizon(own_marks boolean DEFAULT false)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    sequence regclass := pg_get_serial_sequence('hero_stored_event', 'id');
    events regclass := to_regclass('hero_stored_event');
    horizon bigint;
    last bigint;
    others bigint;
    own bigint;
    alone boolean;
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
        -- out that has the mark's low 32 bits; the lowest of other
        -- transactions' and of this one's; and whether this one holds the
        -- store alone. One read of the locks.
        SELECT
            min(last - (last - objid::bigint) % {WRAP}) FILTER (
                WHERE locktype = 'advisory' AND pid <> pg_backend_pid()
            ),
            min(last - (last - objid::bigint) % {WRAP}) FILTER (
                WHERE locktype = 'advisory' AND pid = pg_backend_pid()
            ),
            coalesce(bool_or(locktype = 'relation') FILTER (
                WHERE pid = pg_backend_pid()
            ), false)
        INTO others, own, alone
        FROM pg_locks
        WHERE database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND (
            (locktype = 'advisory' AND classid = {LOCK_CLASS} AND objsubid = 2
             AND objid <> 0)
            OR (locktype = 'relation' AND mode = 'ExclusiveLock' AND granted
                AND relation = events)
          );
        -- Holding the store alone, no other writer is under way: a mark of
        -- another transaction is one that has ended and not let go of it yet.
        horizon := least(
            CASE WHEN NOT alone THEN others END,
            CASE WHEN own_marks THEN own END
        ) - 1;
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
    dependencies = [("hero", "0011_unlinked_after_last_link")]

    operations = [PostgreSQLOnly(HORIZON, _HORIZON_0006)]
