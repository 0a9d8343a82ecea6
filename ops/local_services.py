"""Private, throw-away Redis and Postgres servers on 127.0.0.1 for a local Airflow deployment, and the one way we
stop a process with everything it started. The servers are the Debian packages `scripts/services.sh` installs
(`redis-server`, `postgresql`); each instance gets a free port and a fresh temporary directory, and is stopped,
directory removed, by `stop()`.

    from ops.local_services import Postgres, Redis
    redis, pg = Redis(), Postgres()
    redis.start(); pg.start()
    redis.url   # redis://127.0.0.1:<port>/0
    pg.url      # postgresql+psycopg2://airflow@127.0.0.1:<port>/airflow
    pg.stop(); redis.stop()

Postgres runs as the foreground `postgres` process (not `pg_ctl start`, which daemonises it out of our process
tree), so killing the tree we started always stops it. It refuses to run as root: as root the cluster belongs to
the `postgres` system user that Debian's package creates, in a directory of its own under /tmp (pytest's
tmp_path is not readable by other users).
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Iterable, Sequence

import psutil


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process_trees(pids: Iterable[int], *, signum: int = signal.SIGTERM, grace: float = 30.0) -> list[int]:
    """Send `signum` to every process in the trees rooted at `pids`, SIGKILL whatever is left after `grace`
    seconds; returns the pids still alive after that (should be none). Children are collected before signalling:
    a parent that dies first would hand its children to init and out of reach."""
    tree: list[psutil.Process] = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            tree += [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    for p in tree:
        try:
            p.send_signal(signum)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(alive, timeout=10)
    return [p.pid for p in alive]


class Service:
    """One long-running server process started by us, its log file, and a readiness probe."""

    name = "service"
    stop_signal = signal.SIGTERM

    def __init__(self, log_dir: Path | None = None):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"llmfa-{self.name}-"))
        self.log_path = (log_dir or self.dir) / f"{self.name}.log"
        self.proc: subprocess.Popen | None = None
        self._log: IO | None = None

    def _spawn(self, cmd: Sequence[str], **kwargs) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(list(cmd), stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, **kwargs)

    def ready(self) -> bool:
        raise NotImplementedError

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.3)
        raise TimeoutError(f"{self.name} not ready on 127.0.0.1:{self.port} after {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> list[int]:
        """Stop the server (its own clean-shutdown signal first), remove its directory; returns survivors."""
        alive: list[int] = []
        if self.proc is not None:
            alive = stop_process_trees([self.proc.pid], signum=self.stop_signal)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                alive.append(self.proc.pid)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.dir, ignore_errors=True)
        return alive


class Redis(Service):
    """`redis-server` on 127.0.0.1: no persistence, protected mode, a free port. The Celery broker."""

    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "Redis":
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: run scripts/services.sh (apt-get install redis-server)")
        self._spawn([binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
                     "--protected-mode", "yes", "--daemonize", "no", "--dir", str(self.dir)])
        self.wait_ready()
        return self

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def postgres_bindir() -> Path:
    """Where initdb/postgres live: on PATH, else Debian's /usr/lib/postgresql/<major>/bin (newest major)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    majors = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not majors:
        raise RuntimeError("PostgreSQL's initdb not found: run scripts/services.sh (apt-get install postgresql)")
    return Path(majors[-1]).parent


class Postgres(Service):
    """A fresh cluster (initdb, trust auth for the `airflow` superuser, fsync off: throw-away data) served by
    `postgres` on 127.0.0.1 and a unix socket in its directory, with an empty `airflow` database."""

    name = "postgres"
    stop_signal = signal.SIGINT  # postgres' "fast" shutdown: roll back, close connections, exit

    def __init__(self, log_dir: Path | None = None, user: str = "airflow", database: str = "airflow"):
        super().__init__(log_dir)
        self.user, self.database = user, database
        self.bindir = postgres_bindir()
        self._run_as: dict = {}
        if os.geteuid() == 0:  # postgres will not run as root: hand the cluster to the package's system user
            import pwd

            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and no `postgres` user (Debian's postgresql package creates "
                                   "it): run scripts/services.sh") from None
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._run_as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [],
                            "env": {"PATH": os.environ.get("PATH", ""), "HOME": str(self.dir), "LC_ALL": "C"}}

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _tool(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bindir / args[0]), *args[1:]], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, cwd=self.dir, timeout=120, **self._run_as)

    def start(self) -> "Postgres":
        data = self.dir / "data"
        done = self._tool("initdb", "-D", str(data), "-U", self.user, "-A", "trust", "-E", "UTF8", "--locale=C")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr[-2000:]}")
        self._spawn([str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.dir),
                     "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200", "-c", "fsync=off",
                     "-c", "synchronous_commit=off", "-c", "full_page_writes=off"], cwd=self.dir, **self._run_as)
        self.wait_ready()
        done = self._tool("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, self.database)
        if done.returncode != 0:
            raise RuntimeError(f"createdb {self.database} failed: {done.stderr[-2000:]}")
        return self

    def ready(self) -> bool:
        return self._tool("pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)).returncode == 0
