"""Fixtures shared by every test package: isolated AWS environment and Prefect home."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


@pytest.fixture(autouse=True)
def _aws_test_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> None:
    """Dummy credentials, no profile, no endpoint: a test can never reach a real account."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    config_dir = tmp_path_factory.getbasetemp() / "aws-config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config_dir / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(config_dir / "credentials"))
    # Loading ~1,300 AWS-managed policies costs ~1 s per moto account: only tests that need
    # them ask for it (the `aws_managed_policies` fixture).
    monkeypatch.delenv("MOTO_IAM_LOAD_MANAGED_POLICIES", raising=False)


@pytest.fixture
def aws() -> Iterator[None]:
    """In-process moto for unit tests."""
    from moto import mock_aws

    with mock_aws():
        yield


_schema_copy_lock = threading.Lock()


@pytest.fixture(scope="session")
def _sqlite_at_head(tmp_path_factory) -> Callable[[Callable[..., Any]], Path]:
    """A SQLite state DB brought to head by the migrations (``upgrade``), once per process;
    called under ``_schema_copy_lock``."""
    made: list[Path] = []

    def template(upgrade: Callable[..., Any]) -> Path:
        if not made:
            from state.engine import make_engine

            path = tmp_path_factory.mktemp("schema") / "state.db"
            engine = make_engine(f"sqlite:///{path}")
            try:
                upgrade(engine)
            finally:
                engine.dispose()
            made.append(path)
        return made[0]

    return template


@pytest.fixture(autouse=True)
def _new_sqlite_state_copied_at_head(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, _sqlite_at_head
) -> None:
    """A new, empty SQLite state DB opened in a test's process gets the schema by a copy of
    one the migrations made (SQLite's backup API), not by running every migration again:
    ~0.17 CPU-s each, for hundreds of tests. The result is the same file; the tests of the
    migrations themselves (``real_migrations``), and every subprocess, run them.
    """
    if request.node.get_closest_marker("real_migrations"):
        return
    import sqlite3

    import state.engine

    real = state.engine.upgrade_locked

    def upgrade_locked(engine):
        url = engine.url
        memory = url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"
        if url.get_backend_name() != "sqlite" or memory:
            return real(engine)
        with _schema_copy_lock:
            target = sqlite3.connect(url.database, timeout=30)
            try:
                empty = not target.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                if empty:
                    source = sqlite3.connect(_sqlite_at_head(real))
                    try:
                        source.backup(target)
                    finally:
                        source.close()
            finally:
                target.close()
        return ((), state.engine.code_head()) if empty else real(engine)

    monkeypatch.setattr(state.engine, "upgrade_locked", upgrade_locked)


POSTGRES_URL_ENV = "IAMC_TEST_POSTGRES_URL"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty state DB: a SQLite file, or a fresh PostgreSQL database per test.

    The PostgreSQL variant needs ``IAMC_TEST_POSTGRES_URL`` (e.g.
    ``postgresql+psycopg://postgres@127.0.0.1:5432/test``); each test gets its own database,
    created beside the one named there and dropped afterwards, so xdist workers don't collide.
    """
    if request.param == "sqlite":
        # A not-yet-existing directory: opening the store must create it.
        yield f"sqlite:///{tmp_path / 'state' / 'state.db'}"
        return
    base_url = os.environ.get(POSTGRES_URL_ENV)
    if not base_url:
        pytest.skip(f"{POSTGRES_URL_ENV} not set: PostgreSQL store tests skipped")
    name = f"iamc_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            # FORCE (PostgreSQL 13+) ends connections a failed test left open.
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def aws_managed_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto load AWS-managed policies (ReadOnlyAccess, ...) into new IAM backends."""
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")


@pytest.fixture
def refuse_by_git(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], dict[str, str]]:
    """``refuse_by_git(repo)``: git now refuses ``repo`` for "dubious ownership".

    As root, the repository is given to another uid (a clone another user owns); otherwise git's
    own switch for its ownership check is set (t/t0033-safe-directory.sh). Returns the
    environment a subprocess needs for the same (this process's is already set); no
    safe.directory of this machine's git configuration applies.
    """

    def refuse(repo: Path) -> dict[str, str]:
        env = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
        if os.geteuid() == 0:
            for directory, subdirs, files in os.walk(repo):
                for name in [directory, *(os.path.join(directory, n) for n in subdirs + files)]:
                    os.lchown(name, 54321, 54321)
        else:
            env["GIT_TEST_ASSUME_DIFFERENT_OWNER"] = "1"
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return env

    return refuse


class WorkerPrefectServer:
    """One real Prefect server per test process, started in the background at configure time.

    Every flow the process runs, and every ``iamc`` subprocess its tests start (they inherit
    ``PREFECT_API_URL``), reports to it: no temporary server per process or per CLI call
    (~12 s of CPU each), and nothing a loaded machine can time out while starting.
    """

    def __init__(self, home: Path):
        import threading

        from iamc.serve import local_listener

        # Its port is known at once (the environment's PREFECT_API_URL), and held until the
        # server takes the socket: no other process can take it meanwhile.
        self._listener = local_listener()
        self.api_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/api"
        self.home = home
        self.process = None
        self.error: BaseException | None = None
        self._started = threading.Thread(target=self._start, name="prefect-server", daemon=True)
        self._started.start()

    def _start(self) -> None:
        from iamc.serve import start_server

        try:
            _copy_migrated_database(self.home)
            # Generous: it starts while pytest collects, on a machine that may be shared.
            self.process, _ = start_server(self._listener, self.home, health_timeout=SERVER_START_S)
        except BaseException as err:  # reported to the first test that needs the server
            self.error = err

    def wait(self) -> str:
        """The API URL once the server answers; raises what stopped it from starting."""
        self._started.join()
        if self.error is not None:
            raise RuntimeError(f"the tests' Prefect server did not start: {self.error}")
        return self.api_url

    def stop(self) -> None:
        from iamc.serve import stop_process

        self._started.join()
        if self.process is not None:
            stop_process(self.process)


SERVER_START_S = 600
IDLE_SERVICES = (
    "SCHEDULER",
    "LATE_RUNS",
    "FOREMAN",
    "REPOSSESSOR",
    "CANCELLATION_CLEANUP",
    "PAUSE_EXPIRATIONS",
    "TRIGGERS",
    "EVENT_LOGGER",
    "CLEANUP_RECONCILER",
)
_server: WorkerPrefectServer | None = None


def _copy_migrated_database(home: Path) -> None:
    """Give a new server home a copy of an empty Prefect database already at Prefect's head.

    Migrating a new database is ~7 of a server start's ~10 s of CPU, once per test process.
    One process (under a file lock) migrates a template for this Prefect version; the others
    copy it. The server still checks the schema at start and would migrate what is missing.
    """
    import fcntl
    import sqlite3
    from importlib.metadata import version

    template_home = Path(tempfile.gettempdir()) / f"iamc-tests-prefect-{version('prefect')}"
    template_home.mkdir(exist_ok=True)
    template = template_home / "prefect.db"
    with (template_home / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (template_home / "migrated").exists():
            env = {**os.environ, "PREFECT_HOME": str(template_home)}
            env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)
            subprocess.run(
                [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
                env=env,
                check=True,
                capture_output=True,
                timeout=SERVER_START_S,
            )
            (template_home / "migrated").touch()
        home.mkdir(parents=True, exist_ok=True)
        # The backup API copies a consistent database, WAL included.
        with sqlite3.connect(template) as source, sqlite3.connect(home / "prefect.db") as copy:
            source.backup(copy)


def _runs_tests(config: pytest.Config) -> bool:
    """False in xdist's controller, which only hands tests to its workers."""
    if hasattr(config, "workerinput"):
        return True
    return not getattr(config.option, "numprocesses", None)


# Fewer cyclic-GC passes in this process and every Python process it starts (see the file).
_GC_SITE = Path(__file__).with_name("gc_site")


def _collect_garbage_less_often() -> None:
    """The collector's thresholds of tests/gc_site/sitecustomize.py, here and in children.

    Children find that file on PYTHONPATH (set before a test or the fork server copies the
    environment), so the IamcRunner's import-time variables still agree with its fork server's.
    """
    if str(_GC_SITE) not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (os.environ.get("PYTHONPATH"), str(_GC_SITE)) if p
        )
    import runpy

    runpy.run_path(str(_GC_SITE / "sitecustomize.py"))


def pytest_configure(config: pytest.Config) -> None:
    """Each test process gets its own Prefect home (database, results) and Prefect server."""
    import tempfile

    from tests.leftovers import MARKER

    global _server
    # Set in the controller before xdist starts its workers: every process the session starts
    # inherits it, and pytest_sessionfinish names whatever still carries it.
    if not hasattr(config, "workerinput"):  # workers keep the controller's
        os.environ[MARKER] = uuid.uuid4().hex
    # A test run ended by SIGTERM ends as Ctrl-C does: fixtures' teardowns and
    # pytest_unconfigure stop the servers, sandboxes and commands it started.
    signal.signal(signal.SIGTERM, _interrupt)
    _collect_garbage_less_often()
    # The sandboxes tests start (in process, and `iamc sandbox up` children) report five
    # regions enabled, not all seventeen: each delete run reads every enabled region's
    # resource policies. Tests that place a policy in another region use one of these.
    os.environ.setdefault(
        "IAMC_SANDBOX_ENABLED_REGIONS", "us-east-1,us-east-2,us-west-2,eu-west-1,eu-central-1"
    )
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    home = tempfile.mkdtemp(prefix=f"iamc-prefect-{worker}-")
    os.environ["PREFECT_HOME"] = home
    os.environ.pop("PREFECT_API_URL", None)
    # A CLI run never starts the lasting local server: it reports to this process's server
    # (PREFECT_API_URL), or a test starts what it needs.
    os.environ["IAMC_LOCAL_PREFECT_SERVER"] = "off"
    # Prefect's temporary server gets 20 s to start by default, which a loaded 2-core machine
    # misses ("Timed out while attempting to connect to ephemeral Prefect API server").
    os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "180"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    os.environ["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] = "false"
    # The tests' Prefect servers skip the loop services no test uses (no schedules, workers,
    # automations, concurrency leases, pause time-outs or cancellations): ~0.7 CPU-s a minute
    # each while idle. Task-run recording and event persistence, which the UI shows, stay on.
    for service in IDLE_SERVICES:
        os.environ.setdefault(f"PREFECT_SERVER_SERVICES_{service}_ENABLED", "false")
    if _runs_tests(config):
        # Set before any test module imports Prefect, which reads its settings at import.
        _server = WorkerPrefectServer(Path(home) / "server")
        os.environ["PREFECT_API_URL"] = _server.api_url


# Modules that run whole flows against servers take longest (30-110 s each, few tests):
# they start first, so the test processes end together. `make test` passes
# --no-loadscope-reorder, which makes xdist hand out modules in this order; its own order
# (most tests first) started the end-to-end modules last and left one process running alone.
_LONGEST_FIRST = ("tests/e2e/", "tests/flows/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid
        return next((n for n, prefix in enumerate(_LONGEST_FIRST) if path.startswith(prefix)), 9)

    items.sort(key=rank)  # stable: each module's tests stay together and in order


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# How long processes that end with the session (xdist's workers, stopping their Prefect
# servers) get before what still runs counts as left behind.
LEFTOVER_GRACE_S = 60.0


@pytest.hookimpl(trylast=True)  # after xdist's own, which ends the workers
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop this process's Prefect server; in the controller, fail the session if any process
    it started (a server, sandbox, worker or command) still runs, naming it, and end it."""
    from tests.leftovers import MARKER, end, wait_for_leftovers

    pytest_unconfigure(session.config)
    if hasattr(session.config, "workerinput"):
        return  # the controller looks once every worker has ended
    found = wait_for_leftovers(os.environ[MARKER], LEFTOVER_GRACE_S, exclude=(os.getpid(),))
    if not found:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"processes this test session started are still running ({len(found)}):"]
    lines += [f"  {leftover}" for leftover in found]
    for line in lines:
        if reporter is not None:
            reporter.write_line(line, red=True)
        else:
            print(line, file=sys.stderr)
    end(found)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def seed_prefect_home() -> Callable[[Path], None]:
    """``seed_prefect_home(home)``: a Prefect server started with that home finds its
    database migrated already (a start then costs ~3 s of CPU, not ~10 s)."""
    return _copy_migrated_database


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop this process's Prefect server (its whole process group)."""
    global _server
    if _server is not None:
        _server.stop()
        _server = None


@pytest.fixture(scope="session", autouse=True)
def prefect_api() -> str:
    """The API URL of this test process's Prefect server, once it answers."""
    if _server is None:
        pytest.fail("no Prefect server in this process (pytest_configure did not start one)")
    return _server.wait()


class StartedIamc:
    """An `iamc` command running in the background: its pid, and its exit code once it ends."""

    def __init__(self, pid: int, exited: Callable[[float | None], int | None], files: tuple):
        self.pid = pid
        self._exited = exited
        self.files = files  # (stdout, stderr) paths, or None for a real subprocess's pipes
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._exited(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self._exited(timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired(["iamc"], timeout or 0)
        return self.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


class IamcRunner:
    """Runs `iamc` commands as a user does, each in its own process; see iamc_forkserver.py.

    A command whose Prefect settings match the fork server's runs in a child forked from it
    (no interpreter start or imports: ~0.1 s of CPU instead of ~2.5 s); any other runs as
    ``python -m iamc.cli``. Either way: its own pid, cwd, environment, output and exit code.
    """

    # Read once at import, by Prefect (settings, logging) or moto: a fork can't change them.
    IMPORT_TIME_PREFIXES = ("PREFECT_", "MOTO_", "PYTHON")

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self._server: subprocess.Popen | None = None
        self._fixed: dict[str, str] = {}
        self._lock = threading.Lock()
        self._started: queue.Queue = queue.Queue()
        self._exits: dict[int, int] = {}
        self._exit_seen = threading.Condition()
        self.unavailable: str | None = None
        self.forked = 0

    @staticmethod
    def user_env(**overrides: str) -> dict[str, str]:
        """The environment a user's shell gives `iamc`: this process's, without its AWS
        variables and without the log level set for its own flows (the CLI picks its own)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("AWS_") and k != "PREFECT_LOGGING_LEVEL"
        }
        env.update(overrides)
        return env

    def _import_time(self, env: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in env.items() if k.startswith(self.IMPORT_TIME_PREFIXES)}

    def _start_server(self, env: dict[str, str]) -> None:
        script = Path(__file__).with_name("iamc_forkserver.py")
        self._server = subprocess.Popen(
            # -P: the script's directory (tests/, with its own state/ and flows/) not on sys.path.
            [sys.executable, "-P", str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=self.workdir,
            text=True,
            bufsize=1,
        )
        first = json.loads(self._server.stdout.readline() or '{"unavailable": "it exited"}')
        if "ready" not in first:
            self.unavailable = first.get("unavailable", str(first))
            warnings.warn(
                f"iamc fork server unavailable, commands run as subprocesses: {self.unavailable}",
                stacklevel=1,
            )
            return
        self._fixed = self._import_time(env)
        threading.Thread(target=self._read, name="iamc-forkserver", daemon=True).start()

    def _read(self) -> None:
        for line in self._server.stdout:
            message = json.loads(line)
            if "started" in message:
                self._started.put(message["started"])
            else:
                with self._exit_seen:
                    self._exits[message["exited"]] = message["returncode"]
                    self._exit_seen.notify_all()

    def _exit_of(self, pid: int) -> Callable[[float | None], int | None]:
        def exited(timeout: float | None) -> int | None:
            with self._exit_seen:
                self._exit_seen.wait_for(lambda: pid in self._exits, timeout)
                return self._exits.get(pid)

        return exited

    def _forkable(self, args: tuple[str, ...], env: dict[str, str]) -> bool:
        if (args and args[0] == "sandbox") or "--verbose" in args or "-v" in args:
            return False
        with self._lock:
            if self._server is None and self.unavailable is None:
                self._start_server(env)
        return self.unavailable is None and self._import_time(env) == self._fixed

    def start(
        self, args: tuple[str, ...], cwd: Path, env: dict[str, str], capture: bool = False
    ) -> StartedIamc | subprocess.Popen:
        """The command in the background; ``capture`` keeps its output in files for ``run``."""
        args = tuple(os.fspath(arg) for arg in args)
        if not self._forkable(args, env):
            pipe = subprocess.PIPE if capture else subprocess.DEVNULL
            return subprocess.Popen(
                [sys.executable, "-m", "iamc.cli", *args],
                cwd=cwd,
                env=env,
                stdout=pipe,
                stderr=pipe,
                text=True,
            )
        out = tempfile.mkdtemp(prefix="iamc-out-", dir=self.workdir)
        files = (f"{out}/stdout", f"{out}/stderr") if capture else (os.devnull, os.devnull)
        request = {"argv": list(args), "env": env, "cwd": str(cwd)}
        request.update(stdout=files[0], stderr=files[1])
        with self._lock:
            self._server.stdin.write(json.dumps(request) + "\n")
            self._server.stdin.flush()
            pid = self._started.get(timeout=60)
            self.forked += 1
        return StartedIamc(pid, self._exit_of(pid), files)

    def run(
        self, args: tuple[str, ...], cwd: Path, env: dict[str, str], timeout: float = 300
    ) -> subprocess.CompletedProcess:
        """The command to its end, as ``subprocess.run(..., capture_output=True, text=True)``."""
        started = self.start(args, cwd, env, capture=True)
        argv = ["iamc", *args]
        if isinstance(started, subprocess.Popen):
            try:
                stdout, stderr = started.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                started.kill()
                raise
            return subprocess.CompletedProcess(argv, started.returncode, stdout, stderr)
        try:
            returncode = started.wait(timeout)
        except subprocess.TimeoutExpired:
            started.kill()
            raise
        stdout, stderr = (Path(f).read_text() for f in started.files)
        return subprocess.CompletedProcess(argv, returncode, stdout, stderr)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stdin.close()
            self._server.wait(timeout=30)


@pytest.fixture(scope="session")
def iamc_runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IamcRunner]:
    """Runs `iamc` commands for every test of this process (see IamcRunner)."""
    runner = IamcRunner(tmp_path_factory.mktemp("iamc-runner"))
    yield runner
    runner.stop()
