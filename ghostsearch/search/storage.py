"""Where a study lives: Optuna storages (SQLite, PostgreSQL/MySQL, journal files) with the
heartbeat that fails a killed worker's trial, and opening an existing study by name."""

from __future__ import annotations

import random
import time
import warnings
from pathlib import Path

import optuna

from ..errors import ConfigError, StudyError

RESULTS_DIR = "results"  # under the working directory, never inside the installed package


def study_dir(study_name: str, out: str | Path | None = None) -> Path:
    """Where a study's files go: `out`, or results/<study_name> under the working directory."""
    return Path(out) if out is not None else Path(RESULTS_DIR) / study_name


def default_storage(out_dir: str | Path) -> str:
    """SQLite in the study's own folder, beside its report (made when first opened)."""
    return f"sqlite:///{Path(out_dir) / 'study.db'}"


def make_storage(url: str, heartbeat_s: int = 30) -> optuna.storages.BaseStorage:
    """RDB storages get a heartbeat, so a killed worker's trial is failed (after three missed
    beats) and its configuration retried once."""
    check_storage_url(url)
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    if url.startswith(("sqlite:", "postgresql", "mysql")):
        engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:") else {}
        import sqlalchemy.exc

        for attempt in range(6):
            try:
                with warnings.catch_warnings():  # the heartbeat is "experimental" (Optuna 2.8)
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    storage = optuna.storages.RDBStorage(
                        url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s,
                        grace_period=3 * heartbeat_s,
                        heartbeat_stale_trial_callback=retry_once())
                if url.startswith("sqlite:"):
                    _serialise_sqlite(storage.engine)
                return storage
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError,
                    sqlalchemy.exc.OperationalError):
                # processes opening an empty database together (workers, a second command, a
                # dashboard) race to create its tables: SQLite says "table ... already exists"
                # (OperationalError), PostgreSQL an IntegrityError; the loser retries and
                # finds them made. A database that stays unusable fails on the last attempt.
                if attempt == 5:
                    raise
                time.sleep(0.2 + random.random())
    from optuna.storages.journal import JournalFileBackend  # journal:PATH, the one left

    return optuna.storages.JournalStorage(JournalFileBackend(url[len("journal:"):]))


def retry_once() -> optuna.storages.RetryHeartbeatStaleTrialCallback:
    """Optuna's callback that queues a lost trial's configuration again, once."""
    with warnings.catch_warnings():  # "experimental" since Optuna 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)


def _serialise_sqlite(engine) -> None:
    """Make every SQLite transaction take the write lock when it begins (BEGIN IMMEDIATE).

    Optuna pops an enqueued trial by reading it WAITING and then writing RUNNING in one
    transaction, with a row lock that SQLite ignores; with SQLite's default deferred
    transactions, two workers asking at the same moment both read WAITING and both run the
    trial (60 enqueued trials, 4 processes: 70 pops). Taking the lock up front serialises the
    read and the write, as PostgreSQL's row lock does."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # let the "begin" hook say how to begin

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections made before the hooks (table creation) are not reused


def check_storage_url(url: str) -> None:
    if not url.startswith(("sqlite:", "postgresql", "mysql", "journal:")):
        raise ConfigError(f"--storage {url!r}: unknown scheme; use sqlite:///PATH, "
                          "postgresql://..., mysql://... or journal:PATH")


def existing_study_url(name: str, url: str | None = None,
                       out: str | Path | None = None) -> str:
    """`url`, or the study.db in `study_dir(name, out)`, which must exist."""
    if url is not None:
        return url
    db = study_dir(name, out) / "study.db"
    if not db.exists():
        raise StudyError(f"--study-name {name!r}: no {db}; pass --out DIR (the search's "
                         "output folder) or --storage URL")
    return f"sqlite:///{db}"


def load_existing_study(name: str, url: str | None = None,
                        out: str | Path | None = None) -> optuna.Study:
    """An existing study by name; without `url`, from the study.db in `study_dir(name, out)`."""
    url = existing_study_url(name, url, out)
    try:
        return optuna.load_study(study_name=name, storage=make_storage(url))
    except KeyError:
        raise StudyError(f"--study-name {name!r}: no such study in {url}") from None
