import gevent
import pytest

from hs.storage.database import Database
from hs.storage.migrations import (
    SchemaError,
    SchemaTimeout,
    apply_migrations,
    current_schema_version,
    find_migrations,
    latest_version,
    wait_for_schema,
)
from tests.pg import create_database, drop_database, make_dsn, unique_name


@pytest.fixture
def empty_dsn(pg_server_dsn):
    name = unique_name("hs_test_migrations")
    create_database(pg_server_dsn, name)
    yield make_dsn(pg_server_dsn, name)
    drop_database(pg_server_dsn, name)


@pytest.fixture
def db(empty_dsn):
    db = Database(empty_dsn, max_connections=2)
    yield db
    db.close()


def write_migrations(directory, files):
    directory.mkdir(exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


def logging_migrations(count):
    """Files 1_m.sql .. count_m.sql (unpadded, so name order differs from number order), each
    appending its number to ``applied``."""
    files = {"1_m.sql": "CREATE TABLE applied (seq SERIAL, version INT);\nINSERT INTO applied (version) VALUES (1);"}
    for n in range(2, count + 1):
        files[f"{n}_m.sql"] = f"INSERT INTO applied (version) VALUES ({n});"
    return files


def applied(db):
    return [row[0] for row in db.execute("applied", "SELECT version FROM applied ORDER BY seq")]


def test_applies_files_in_numeric_order_once(db, tmp_path):
    directory = write_migrations(tmp_path / "m", logging_migrations(11))
    assert apply_migrations(db, directory) == 11
    assert applied(db) == list(range(1, 12))
    assert current_schema_version(db) == 11

    assert apply_migrations(db, directory) == 11  # idempotent
    assert applied(db) == list(range(1, 12))


def test_later_files_apply_on_the_next_start(db, tmp_path):
    directory = write_migrations(tmp_path / "m", logging_migrations(2))
    apply_migrations(db, directory)
    write_migrations(directory, {"3_more.sql": "INSERT INTO applied (version) VALUES (3);"})
    assert apply_migrations(db, directory) == 3
    assert applied(db) == [1, 2, 3]


def test_no_files_means_version_zero(db, tmp_path):
    assert current_schema_version(db) == 0  # before any run: no schema_version table yet
    assert apply_migrations(db, write_migrations(tmp_path / "m", {"README.md": "not a migration"})) == 0
    assert current_schema_version(db) == 0


def test_concurrent_starters_apply_each_file_once(empty_dsn, tmp_path):
    files = logging_migrations(3)
    files["1_m.sql"] += "\nSELECT pg_sleep(0.2);"  # hold the lock while the others queue up
    directory = write_migrations(tmp_path / "m", files)
    starters = [Database(empty_dsn, max_connections=1) for _ in range(4)]
    try:
        jobs = [gevent.spawn(apply_migrations, db, directory) for db in starters]
        gevent.joinall(jobs, raise_error=True, timeout=20)
        assert [job.value for job in jobs] == [3, 3, 3, 3]
        assert applied(starters[0]) == [1, 2, 3]
    finally:
        for db in starters:
            db.close()


def test_refuses_a_database_newer_than_the_code(db, tmp_path):
    apply_migrations(db, write_migrations(tmp_path / "new", logging_migrations(3)))
    old_code = write_migrations(tmp_path / "old", logging_migrations(2))
    with pytest.raises(SchemaError, match="newer"):
        apply_migrations(db, old_code)
    assert current_schema_version(db) == 3


def test_failing_file_rolls_back_and_keeps_the_version(db, tmp_path):
    files = logging_migrations(1)
    files["2_broken.sql"] = "CREATE TABLE half_done (x INT);\nINSERT INTO no_such_table VALUES (1);"
    files["3_m.sql"] = "INSERT INTO applied (version) VALUES (3);"
    directory = write_migrations(tmp_path / "m", files)
    with pytest.raises(SchemaError, match="2_broken.sql"):
        apply_migrations(db, directory)
    assert current_schema_version(db) == 1
    assert applied(db) == [1]
    assert db.execute("exists", "SELECT to_regclass('half_done')") == [(None,)]


@pytest.mark.parametrize("names", [["1_a.sql", "3_c.sql"], ["1_a.sql", "2_b.sql", "02_b2.sql"]])
def test_rejects_gaps_and_duplicate_numbers(tmp_path, names):
    directory = write_migrations(tmp_path / "m", {name: "SELECT 1;" for name in names})
    with pytest.raises(SchemaError, match="numbered"):
        find_migrations(directory)


def test_wait_for_schema(db, tmp_path):
    directory = write_migrations(tmp_path / "m", logging_migrations(2))
    with pytest.raises(SchemaTimeout):
        wait_for_schema(db, 2, timeout=0.2, poll_interval=0.05)

    master = gevent.spawn_later(0.2, apply_migrations, db, directory)
    wait_for_schema(db, 2, timeout=10, poll_interval=0.05)
    assert master.get() == 2

    with pytest.raises(SchemaError, match="newer"):
        wait_for_schema(db, 1, timeout=10)


def test_template_database_has_the_real_schema(db_dsn):
    db = Database(db_dsn, max_connections=1)
    try:
        assert current_schema_version(db) == latest_version()
    finally:
        db.close()
