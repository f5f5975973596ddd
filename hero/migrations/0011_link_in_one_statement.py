"""PostgreSQL: ``hero_link`` writes links made after a caller's commit in one
statement, its own transaction.

Linking after the caller's commit used to take a transaction of five
statements (``BEGIN``, ``SET LOCAL synchronous_commit``, ``hero_unlinked``,
the links' ``UPDATE`` and ``COMMIT``). It now reads with ``hero_unlinked``
alone (in autocommit: the linker's lock is tried and released within the
statement), and writes the links it made with this function, a statement of
its own in autocommit, which:

- commits without waiting for the disk (links are made again from the sealed
  events if a crash loses them, and a later commit that reaches the disk
  takes this one with it);
- tries the linker's lock, and links nothing if another process holds it;
- links only if the chain still ends where the links were made from: at the
  last link the reader saw, or at one of the new links (another linker made
  the same links meanwhile, with the same key). Otherwise, say another
  process linked them with another key, it links nothing and leaves the
  events to the next linker;
- writes only positions after the last link, so the linked events stay a
  prefix of the store.

Migrating back drops it. Nothing changes on the other backends.
"""

from django.db import migrations

from hero.migrations._sql import PostgreSQLOnly

LINK = """
CREATE FUNCTION hero_link(
    lock_key bigint, base_link bytea, positions bigint[], links bytea[]
) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    last_id bigint;
    last_chain bytea;
    linked bigint;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    IF NOT pg_try_advisory_xact_lock(lock_key) THEN
        RETURN 0;
    END IF;
    -- After the lock: a snapshot of its own, which sees earlier linkers' work.
    SELECT e.id, e.chain INTO last_id, last_chain
      FROM hero_stored_event e
     WHERE e.chain IS NOT NULL ORDER BY e.id DESC LIMIT 1;
    -- Whether the chain ends where the links were made from (NULL counts as
    -- no: a base link given where the store has none, or none given where it
    -- has one).
    IF NOT coalesce(
        (last_id IS NULL AND base_link IS NULL)
        OR last_chain = base_link
        OR EXISTS (
            SELECT 1 FROM unnest(positions, links) AS v(p, l)
             WHERE v.p = last_id AND v.l = last_chain
        ),
        false
    ) THEN
        RETURN 0;
    END IF;
    UPDATE hero_stored_event e SET chain = v.l, seal = NULL
      FROM unnest(positions, links) AS v(p, l)
     WHERE e.id = v.p AND e.chain IS NULL
       AND (last_id IS NULL OR e.id > last_id);
    GET DIAGNOSTICS linked = ROW_COUNT;
    RETURN linked;
END
$$;
"""

DROP = "DROP FUNCTION hero_link(bigint, bytea, bigint[], bytea[]);"


class Migration(migrations.Migration):
    dependencies = [("hero", "0010_payload_sealed_under_data_keys")]

    operations = [PostgreSQLOnly(LINK, DROP)]
