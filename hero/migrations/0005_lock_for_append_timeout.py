"""PostgreSQL: ``hero_lock_for_append`` with the wait for the lock given.

The four-argument form sets ``lock_timeout`` for the lock it takes and puts
the caller's value back before it returns: what a writer of events did in
three statements (save the caller's value, set hero's, take the lock, put it
back), in one. If the lock is not free in time, the error ends the statement
(and the transaction, or the savepoint, with it), as before. Nothing changes
on the other backends.
"""

from django.db import migrations

from hero.migrations._sql import PostgreSQLOnly

LOCK_FOR_APPEND_WAITING = """
CREATE FUNCTION hero_lock_for_append(
    keys text[], markers text[], applies_inline boolean, wait text
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    callers text := current_setting('lock_timeout');
    alongside boolean;
BEGIN
    PERFORM set_config('lock_timeout', wait, true);
    alongside := hero_lock_for_append(keys, markers, applies_inline);
    PERFORM set_config('lock_timeout', callers, true);
    RETURN alongside;
END
$$;
"""

NO_LOCK_FOR_APPEND_WAITING = """
DROP FUNCTION hero_lock_for_append(text[], text[], boolean, text);
"""


class Migration(migrations.Migration):
    dependencies = [("hero", "0004_user_key_without_rowid")]

    operations = [PostgreSQLOnly(LOCK_FOR_APPEND_WAITING, NO_LOCK_FOR_APPEND_WAITING)]
