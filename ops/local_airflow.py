"""A throw-away Airflow deployment on this machine: its own AIRFLOW_HOME, a metadata DB (SQLite, or a private
Postgres cluster), the long-running services you ask for on 127.0.0.1 (api-server, dag-processor, scheduler) and
N Celery workers (with a private Redis broker). What the real-deployment tests, the main job's runner and the
executor benchmark start; `stop()` kills every process tree it started, also after a failure.

    from ops.local_airflow import LocalAirflow
    with LocalAirflow(home, executor="CeleryExecutor", database="postgres", celery_workers=2,
                      services=("api-server",)) as airflow:        # start() ... stop()
        airflow.wait_for("the api-server", airflow.healthy, timeout=180)
        airflow.dags_test("augment_features", logical_date="1970-01-30T00:00:00+00:00")
        airflow.api("GET", "/dags/augment_features/dagRuns")

Every process gets the same environment (`env`): AIRFLOW_* settings as `AIRFLOW__SECTION__KEY` variables, a fresh
JWT secret shared by the api-server and whoever issues task tokens, and the execution API URL that task
supervisors call. Each Celery worker has its own name and reports it as the task instances' hostname
(`worker_hostname`, via `[core] hostname_callable`), so the metadata DB says which worker ran what.

Pitfalls measured here: pools must exist before the scheduler starts (tasks in a missing pool never run); Celery
workers need AIRFLOW__CORE__EXECUTION_API_SERVER_URL; a Postgres metadata DB needs asyncpg besides psycopg2
(Airflow also opens an async engine); celery 5.7.0 breaks apache-airflow-providers-celery 3.26.0 (pin 5.6.3).
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any, Callable, Mapping, Sequence

from configs import environment as env
from configs.run_config import REPO_ROOT
from ops.local_services import Postgres, Redis, free_port, stop_process_trees

SERVICES = ("api-server", "dag-processor", "scheduler")
# SQLite deployments: how long a connection waits for another's write lock (sqlite3's default is 5 s). With the
# generation engines holding both cores, a process in the middle of a write can be off the CPU for longer than 5 s,
# and the next writer then fails with "database is locked" (seen in the daily-replay test on a 2-core box).
# Airflow reads these through [database] sql_alchemy_connect_args(_async), an import path.
SQLITE_CONNECT_ARGS: dict[str, Any] = {"timeout": 120}
SQLITE_CONNECT_ARGS_ASYNC: dict[str, Any] = {"timeout": 120}
WORKER_HOSTNAME_ENV = env.WORKER_HOSTNAME.name


def worker_hostname() -> str:
    """`[core] hostname_callable` of our Celery workers: the worker's own name, so two workers on one machine are
    told apart in the task instances (and in the UI); the machine's FQDN anywhere else."""
    import socket

    return os.environ.get(WORKER_HOSTNAME_ENV) or socket.getfqdn()


class QuietDagTestPolling(logging.Filter):
    """`dag.test(use_executor=True)` polls once a second and, while the executor runs tasks, warns "No tasks to
    run. unrunnable tasks: {...}" listing every unfinished task: a multi-kilobyte line per second, ~600 for one
    generation shard. The warning is dropped while some listed task is in flight (queued, running, ...); with
    nothing in flight (a real dead end) it still shows."""

    IN_FLIGHT = frozenset({"queued", "running", "scheduled", "up_for_retry", "up_for_reschedule", "deferred",
                           "restarting"})

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("No tasks to run"):
            return True
        tis = record.args[0] if isinstance(record.args, tuple) and record.args else ()
        # TaskInstanceState is a str enum: its members compare and hash as their values.
        return not any(getattr(ti, "state", None) in self.IN_FLIGHT for ti in tis)


def quiet_dag_test_polling() -> None:
    """Install QuietDagTestPolling on the logger of Airflow's dag.test() loop (idempotent)."""
    logger = logging.getLogger("airflow.sdk.definitions.dag")
    if not any(isinstance(f, QuietDagTestPolling) for f in logger.filters):
        logger.addFilter(QuietDagTestPolling())


def airflow_command() -> str:
    """The `airflow` console script of this interpreter's environment, as a user runs it."""
    script = Path(sys.executable).parent / "airflow"
    if not script.exists():
        found = shutil.which("airflow")
        if found is None:
            raise RuntimeError(f"no `airflow` script beside {sys.executable} or on PATH")
        return found
    return str(script)


class LocalAirflow:
    """One deployment. `executor`: LocalExecutor or CeleryExecutor; `database`: sqlite or postgres; `services`:
    which long-running Airflow components to start; `celery_workers`: how many workers (CeleryExecutor), each
    serving `queues` with `worker_concurrency` task slots; `pools`: created before any service starts.
    `inherit_airflow_env=False` (tests) drops the caller's AIRFLOW* variables; True keeps a user's overrides
    wherever this class sets nothing."""

    def __init__(self, home: Path, *, executor: str = "LocalExecutor", database: str = "sqlite",
                 services: Sequence[str] = SERVICES, celery_workers: int = 0, worker_concurrency: int = 1,
                 queues: Sequence[str] = ("default", "llm"), pools: Mapping[str, int] | None = None,
                 parallelism: int = 4, config_path: Path | str | None = None,
                 extra_env: Mapping[str, str] | None = None, inherit_airflow_env: bool = False):
        if executor not in ("LocalExecutor", "CeleryExecutor"):
            raise ValueError(f"executor={executor!r}: LocalExecutor or CeleryExecutor")
        if database not in ("sqlite", "postgres"):
            raise ValueError(f"database={database!r}: sqlite or postgres")
        if celery_workers and executor != "CeleryExecutor":
            raise ValueError("celery_workers needs executor='CeleryExecutor'")
        unknown = set(services) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown services {sorted(unknown)}: choose from {SERVICES}")
        self.home = Path(home)
        self.executor, self.services = executor, tuple(services)
        self.celery_workers, self.worker_concurrency, self.queues = celery_workers, worker_concurrency, tuple(queues)
        self.pools = dict({"llm": 2} if pools is None else pools)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.postgres = Postgres(log_dir=self.home) if database == "postgres" else None
        self.redis = Redis(log_dir=self.home) if executor == "CeleryExecutor" else None
        self.settings: dict[str, str] = {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base,
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        }
        if self.postgres is not None:
            self.settings["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = self.postgres.url
        else:
            self.settings.update({
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": f"{__name__}.SQLITE_CONNECT_ARGS",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": f"{__name__}.SQLITE_CONNECT_ARGS_ASYNC",
            })
        if self.redis is not None:
            self.settings.update({
                "AIRFLOW__CELERY__BROKER_URL": self.redis.url,
                # Task states come from the metadata DB; Celery's own results go there too (db+ backend).
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + (self.postgres.url if self.postgres is not None
                                                            else f"sqlite:///{self.home / 'airflow.db'}"),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(worker_concurrency),
            })
        if config_path is not None:
            self.settings[env.CONFIG.name] = str(config_path)
        self.settings.update(extra_env or {})
        inherited = {k: v for k, v in os.environ.items() if inherit_airflow_env or not k.startswith("AIRFLOW")}
        self.env = {**inherited, **self.settings}
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: list[IO] = []

    # -- life cycle -------------------------------------------------------------------------------------------

    def start(self) -> "LocalAirflow":
        """Servers, DB migration, pools, then the Airflow services and workers (not yet ready: see wait_for)."""
        self.home.mkdir(parents=True, exist_ok=True)
        try:
            if self.postgres is not None:
                self.postgres.start()
            if self.redis is not None:
                self.redis.start()
            self.cli("db", "migrate")
            for pool, slots in self.pools.items():  # before the scheduler: tasks in a missing pool never run
                self.cli("pools", "set", pool, str(slots), f"{pool} slots")
            commands = {"api-server": ["api-server", "--host", "127.0.0.1", "--port", str(self.port)],
                        "dag-processor": ["dag-processor"], "scheduler": ["scheduler"]}
            for name in self.services:
                self._spawn(name, commands[name])
            for i in range(self.celery_workers):
                self._spawn(f"worker-{i}", ["celery", "worker", "--celery-hostname", f"worker-{i}@%h",
                                            "--queues", ",".join(self.queues),
                                            "--concurrency", str(self.worker_concurrency),
                                            "--skip-serve-logs"],  # two log servers on one box would share a port
                            {"AIRFLOW__CORE__HOSTNAME_CALLABLE": "ops.local_airflow.worker_hostname",
                             WORKER_HOSTNAME_ENV: f"worker-{i}"})
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        log = open(self.home / f"{name}.log", "ab")
        self._logs.append(log)
        self.procs[name] = subprocess.Popen([airflow_command(), *args], env={**self.env, **(env or {})},
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)

    def stop(self) -> list[int]:
        """SIGTERM, then SIGKILL after 30 s, every Airflow process tree we started (services, workers and the
        tasks they run); then the Postgres and Redis servers. Returns the pids still alive (should be none)."""
        alive = stop_process_trees([p.pid for p in self.procs.values()])
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                alive.append(proc.pid)
        self.procs.clear()
        for server in (self.redis, self.postgres):
            if server is not None:
                alive += server.stop()
        for log in self._logs:
            log.close()
        self._logs.clear()
        return alive

    def __enter__(self) -> "LocalAirflow":
        return self.start()

    def __exit__(self, *exc) -> None:
        leftovers = self.stop()
        if leftovers and exc[0] is None:
            raise RuntimeError(f"processes survived the shutdown: {leftovers}")

    # -- commands and probes ----------------------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 300) -> str:
        """`airflow <args>` in this deployment's environment; its stdout (an assertion error with stderr if it
        fails)."""
        out = subprocess.run([airflow_command(), *args], env=self.env, capture_output=True, text=True,
                             timeout=timeout, stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            raise AssertionError(f"airflow {' '.join(args)} exited {out.returncode}: {out.stderr[-3000:]}")
        return out.stdout

    def dags_test(self, dag_id: str, logical_date: str | None = None, conf: Mapping[str, Any] | None = None,
                  timeout: float = 1800) -> int:
        """`airflow dags test --use-executor`: one run of `dag_id` through this deployment's executor (the CLI
        itself plays the scheduler). Output in <home>/dags-test-<dag_id>.log; returns the exit code. Killed
        with its whole tree (its executor's processes) on timeout or interruption."""
        args = ["dags", "test", "--use-executor", dag_id, *([logical_date] if logical_date else [])]
        if conf:
            args += ["--conf", json.dumps(conf)]
        with open(self.home / f"dags-test-{dag_id}.log", "ab") as log:
            proc = subprocess.Popen([airflow_command(), *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                deadline = time.monotonic() + timeout
                while proc.poll() is None:
                    for name, service in self.procs.items():
                        if service.poll() is not None:
                            raise AssertionError(f"{name} exited during dags test: {self.log_tail(name)}")
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"airflow dags test {dag_id}: still running after {timeout:.0f} s")
                    time.sleep(1)
            finally:
                if proc.poll() is None:
                    stop_process_trees([proc.pid])
                    proc.wait(timeout=10)
        return proc.returncode

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.is_file() else "(no log)"

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        """One call of the REST API (/api/v2) of this deployment's api-server."""
        req = urllib.request.Request(f"{self.base}/api/v2{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"{}")

    def healthy(self) -> dict | None:
        health = self.api("GET", "/monitor/health")
        return health if health.get("metadatabase", {}).get("status") == "healthy" else None

    def celery_workers_ready(self) -> list[str] | None:
        """The names of the Celery workers that answer, once all of ours do."""
        out = self.cli("celery", "list-workers", "--output", "json", timeout=120)
        try:
            names = sorted(w["worker_name"] for w in json.loads(out))
        except ValueError:  # no worker answered yet: the console prints a message, not JSON
            return None
        wanted = {f"worker-{i}" for i in range(self.celery_workers)}
        return names if wanted <= {n.split("@")[0] for n in names} else None

    def wait_for(self, what: str, probe: Callable[[], Any], timeout: float, every: float = 3.0) -> Any:
        """Poll `probe` until it returns something truthy; fail at once if one of our processes died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited: {self.log_tail(name)}")
            try:
                value = probe()
            except (urllib.error.URLError, ConnectionError, TimeoutError, AssertionError):
                value = None
            if value:
                return value
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")

    def dag_runs(self, dag_id: str) -> list[dict]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns?order_by=logical_date&limit=100")["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        value = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/"
                                "return_value")["value"]
        return json.loads(value) if isinstance(value, str) else value

    def task_log_tail(self, dag_id: str, run_id: str) -> str:
        """The end of the log of every failed task of a run (for assertion messages)."""
        lines = []
        for ti in self.task_instances(dag_id, run_id):
            if ti["state"] == "failed":
                for log in sorted((self.home / "logs").rglob("*.log")):
                    if f"task_id={ti['task_id']}" in str(log) and run_id in str(log):
                        lines.append(f"--- {log}\n{log.read_text(errors='replace')[-2500:]}")
        return "\n".join(lines)
