"""PostgreSQL scale-out: positions reserved without the table lock, followers
bounded by a horizon, a count's changes settled at COMMIT.

``hero_reserve_positions(n)`` takes the next ``n`` positions of the events'
sequence and marks the first with an advisory lock held until the writer's
transaction ends; ``hero_horizon()`` is the highest position below every mark
(:mod:`hero.store.ordering`); the reader's own marks count only if it asks
(``own_marks``), its own events being visible to it already. Both take the same short gate, a session
advisory lock released before they return, so that a reservation is marked
before any reader can see the sequence past it.

``hero_achievement_count_change`` holds the changes in holders that a
transaction made; on PostgreSQL a constraint trigger deferred to ``COMMIT``
(``hero_settle_count``) moves each into ``hero_achievement_count``, so a
popular achievement's count row is locked for the commit alone. On the other
backends the table stays empty: their writers update the counts directly.
"""

from django.db import migrations, models

from hero.migrations._sql import PostgreSQLOnly

SETTLE_COUNT = """
CREATE FUNCTION hero_settle_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Only a change still pending: one deleted meanwhile (a rebuild emptying
    -- the holdings in the same transaction) is not added.
    DELETE FROM hero_achievement_count_change WHERE id = NEW.id;
    IF FOUND THEN
        INSERT INTO hero_achievement_count AS c (achievement_id, level, holders)
        VALUES (NEW.achievement_id, NEW.level, NEW.holders)
        ON CONFLICT (achievement_id, level)
        DO UPDATE SET holders = c.holders + EXCLUDED.holders;
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER hero_settle_count
    AFTER INSERT ON hero_achievement_count_change
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION hero_settle_count();
"""

#: The advisory locks' class id: "hero" in ASCII (hero.store.ordering.LOCK_CLASS).
LOCK_CLASS = 1751478895

RESERVE_AND_HORIZON = f"""
-- The events not linked yet (a few at most), found by whoever links them.
CREATE INDEX hero_stored_event_unlinked ON hero_stored_event (id)
    WHERE chain IS NULL;
CREATE FUNCTION hero_reserve_positions(n integer) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    sequence regclass := pg_get_serial_sequence('hero_stored_event', 'id');
    positions bigint[];
BEGIN
    PERFORM pg_advisory_lock({LOCK_CLASS}, 0);
    BEGIN
        SELECT array_agg(nextval(sequence) ORDER BY g) INTO positions
        FROM generate_series(1, n) AS g;
        PERFORM pg_advisory_xact_lock({LOCK_CLASS}, positions[1]::integer);
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        PERFORM pg_advisory_unlock({LOCK_CLASS}, 0);
        RAISE;
    END;
    PERFORM pg_advisory_unlock({LOCK_CLASS}, 0);
    RETURN QUERY SELECT unnest(positions);
END
$$;
CREATE FUNCTION hero_horizon(own_marks boolean DEFAULT false) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    horizon bigint;
    last bigint;
BEGIN
    PERFORM pg_advisory_lock({LOCK_CLASS}, 0);
    BEGIN
        SELECT min(objid::bigint) - 1 INTO horizon FROM pg_locks
        WHERE locktype = 'advisory' AND classid = {LOCK_CLASS} AND objsubid = 2
          AND objid <> 0 AND (own_marks OR pid <> pg_backend_pid()) AND database = (
            SELECT oid FROM pg_database WHERE datname = current_database()
          );
        IF horizon IS NULL THEN
            EXECUTE format(
                'SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END '
                'FROM %s', pg_get_serial_sequence('hero_stored_event', 'id')
            ) INTO horizon;
            -- Rows written with ids of their own, past the sequence.
            SELECT greatest(horizon, max(id)) INTO horizon FROM hero_stored_event;
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

LOCK_FOR_APPEND = """
CREATE FUNCTION hero_may_append_alongside(
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
CREATE FUNCTION hero_lock_for_append(
    keys text[], markers text[], applies_inline boolean
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    alongside boolean;
BEGIN
    LOOP
        alongside := hero_may_append_alongside(keys, markers, applies_inline);
        BEGIN
            IF alongside THEN
                LOCK TABLE hero_stored_event IN ROW EXCLUSIVE MODE;
                -- Changed by a writer that held the table while this one
                -- waited: release the lock with this block and decide again.
                IF NOT hero_may_append_alongside(keys, markers, applies_inline) THEN
                    RAISE EXCEPTION USING ERRCODE = 'HR001';
                END IF;
            ELSE
                LOCK TABLE hero_stored_event IN EXCLUSIVE MODE;
            END IF;
            RETURN alongside;
        EXCEPTION WHEN SQLSTATE 'HR001' THEN
            NULL;
        END;
    END LOOP;
END
$$;
"""

NO_LOCK_FOR_APPEND = """
DROP FUNCTION hero_lock_for_append(text[], text[], boolean);
DROP FUNCTION hero_may_append_alongside(text[], text[], boolean);
"""

NO_RESERVE_AND_HORIZON = """
DROP INDEX hero_stored_event_unlinked;
DROP FUNCTION hero_horizon(boolean);
DROP FUNCTION hero_reserve_positions(integer);
"""

UNSETTLE_COUNT = """
DROP TRIGGER hero_settle_count ON hero_achievement_count_change;
DROP FUNCTION hero_settle_count();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("hero", "0002_forget"),
    ]

    operations = [
        migrations.AddField(
            model_name="storedevent",
            name="seal",
            field=models.BinaryField(
                help_text=(
                    "Until the event is linked (PostgreSQL links after the "
                    "commit): HMAC-SHA-256, keyed with the chain key, over its "
                    "position and the event."
                ),
                null=True,
            ),
        ),
        migrations.CreateModel(
            name="AchievementCountChange",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("achievement_id", models.CharField(max_length=255)),
                ("level", models.PositiveSmallIntegerField()),
                ("holders", models.BigIntegerField()),
            ],
            options={
                "db_table": "hero_achievement_count_change",
                "default_permissions": (),
            },
        ),
        PostgreSQLOnly(SETTLE_COUNT, UNSETTLE_COUNT),
        PostgreSQLOnly(RESERVE_AND_HORIZON, NO_RESERVE_AND_HORIZON),
        PostgreSQLOnly(LOCK_FOR_APPEND, NO_LOCK_FOR_APPEND),
    ]
