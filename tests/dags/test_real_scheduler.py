"""Both DAGs under a real Airflow: scheduler, dag-processor and api-server on 127.0.0.1, LocalExecutor, SQLite.

This is the deployment `dag.test()` cannot stand in for: every task runs in its own supervised process with the
environment Airflow's task runner gives it (ORM access blocked), generation shards queue in the real `llm` pool,
and retrain_ctr is started by the scheduler from the Asset events augment_features emits, not by us.
The test starts every process itself, in its own session, and kills each process tree at the end.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).parent / "airflow")  # the console script, as a user runs it
POOL_SLOTS = 2  # two engines side by side: they must end up on disjoint cores


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalAirflow:
    """A throw-away Airflow deployment: its own AIRFLOW_HOME, SQLite DB, pool, and three long-running services."""

    def __init__(self, home: Path, config_path: Path):
        self.home = home
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update({
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base,
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "LLMFA_CONFIG": str(config_path),
            "LLMFA_TASK_RETRIES": "0",
        })
        self.env = env
        self.procs: dict[str, subprocess.Popen] = {}

    def cli(self, *args: str, timeout: float = 300) -> str:
        out = subprocess.run([AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
        assert out.returncode == 0, f"airflow {' '.join(args)}: {out.stderr[-3000:]}"
        return out.stdout

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.cli("db", "migrate")
        self.cli("pools", "set", "llm", str(POOL_SLOTS), "LLM generation slots")  # before the scheduler starts
        for name, args in (("api-server", ["api-server", "--host", "127.0.0.1", "--port", str(self.port)]),
                           ("dag-processor", ["dag-processor"]), ("scheduler", ["scheduler"])):
            log = open(self.home / f"{name}.log", "w")
            self.procs[name] = subprocess.Popen([AIRFLOW, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, start_new_session=True)

    def stop(self) -> list[int]:
        """SIGTERM then SIGKILL every process we started and all their descendants; returns pids still alive."""
        tree: list[psutil.Process] = []
        for proc in self.procs.values():
            try:
                root = psutil.Process(proc.pid)
                tree += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        for p in tree:
            try:
                p.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(tree, timeout=30)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(alive, timeout=10)
        for proc in self.procs.values():
            proc.wait(timeout=10)
        return [p.pid for p in alive]

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(f"{self.base}/api/v2{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"{}")

    def wait_for(self, what: str, probe, timeout: float, every: float = 3.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                assert proc.poll() is None, f"{name} exited: {(self.home / f'{name}.log').read_text()[-3000:]}"
            try:
                value = probe()
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                value = None
            if value:
                return value
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]

    def task_log_tail(self, dag_id: str, run_id: str) -> str:
        lines = []
        for ti in self.task_instances(dag_id, run_id):
            if ti["state"] == "failed":
                for log in sorted((self.home / "logs").rglob("*.log")):
                    if f"task_id={ti['task_id']}" in str(log) and run_id in str(log):
                        lines.append(f"--- {log}\n{log.read_text()[-2500:]}")
        return "\n".join(lines)


def _finished(airflow: LocalAirflow, dag_id: str, run_id: str) -> dict | None:
    run = airflow.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
    return run if run["state"] in ("success", "failed") else None


def _seconds(ti: dict) -> float:
    start, end = (datetime.fromisoformat(ti[k]) for k in ("start_date", "end_date"))
    return (end - start).total_seconds()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_both_dags_succeed_under_a_real_scheduler(tmp_path, make_tiny_config):
    if "augment.llm_engine" in sys.modules:  # an engine cached by an earlier test holds cores and 3 GiB
        sys.modules["augment.llm_engine"].shutdown_engines()
    config_path = make_tiny_config(tmp_path)
    airflow = LocalAirflow(tmp_path / "airflow_home", config_path)
    try:
        airflow.start()
        airflow.wait_for("the api-server", lambda: airflow.api("GET", "/monitor/health"), timeout=180)
        dags = {d: airflow.wait_for(f"{d} to be parsed", lambda d=d: airflow.api("GET", f"/dags/{d}"), timeout=180)
                for d in ("augment_features", "retrain_ctr")}
        # Trigger while the DAG is still paused. If the scheduler's next run is already due, take its logical date,
        # so unpausing starts this run instead of adding a second one for the same interval; a future date would
        # never start ("Logical date is in future"), so then trigger for now (the scheduled one is not due yet).
        due = dags["augment_features"]["next_dagrun_logical_date"]
        if due and datetime.fromisoformat(due) > datetime.now(timezone.utc):
            due = None
        run = airflow.api("POST", "/dags/augment_features/dagRuns",
                          {"logical_date": due, "conf": {"config": str(config_path)}})
        for dag_id in dags:
            airflow.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})
        augment_run = airflow.wait_for("augment_features", lambda: _finished(airflow, "augment_features",
                                                                             run["dag_run_id"]), timeout=1200)
        assert augment_run["state"] == "success", airflow.task_log_tail("augment_features", run["dag_run_id"])

        def retrain_run():
            runs = airflow.api("GET", "/dags/retrain_ctr/dagRuns")["dag_runs"]
            done = [r for r in runs if r["state"] in ("success", "failed")]
            return done[0] if done and len(done) == len(runs) else None

        retrain = airflow.wait_for("retrain_ctr (started by the Asset events)", retrain_run, timeout=600)
        assert retrain["run_type"] == "asset_triggered"
        assert len(airflow.api("GET", "/dags/augment_features/dagRuns")["dag_runs"]) == 1  # no second, scheduled run
        assert retrain["state"] == "success", airflow.task_log_tail("retrain_ctr", retrain["dag_run_id"])

        tis = {dag_id: airflow.task_instances(dag_id, r)
               for dag_id, r in (("augment_features", run["dag_run_id"]), ("retrain_ctr", retrain["dag_run_id"]))}
        summary = {dag_id: [{"task": t["task_id"], "map_index": t["map_index"], "state": t["state"],
                             "seconds": round(_seconds(t), 1), "start": t["start_date"], "end": t["end_date"]}
                            for t in rows if t["start_date"]] for dag_id, rows in tis.items()}
        (tmp_path / "summary.json").write_text(json.dumps(summary, indent=1))
        print(json.dumps(summary, indent=1))
        assert all(t["state"] in ("success", "skipped") for rows in tis.values() for t in rows)

        # Shards ran as separate processes, each engine pinned to its own cores, two at a time at most (pool).
        from configs import load_config
        from feature_store import FeatureStore

        cfg = load_config(config_path)
        stats = [json.loads(p.read_text()) for p in sorted((cfg.workdir_path / "stats").glob("generate-*.json"))]
        kar = [s for s in stats if s.get("kind") in ("item", "user") and s.get("generated")]
        assert len(kar) == 4, stats
        gen = [t for t in tis["augment_features"] if t["task_id"] in ("generate_item", "generate_user")]
        events = sorted([(t["start_date"], 1) for t in gen] + [(t["end_date"], -1) for t in gen])
        running = [sum(step for _, step in events[:i + 1]) for i in range(len(events))]
        assert max(running) <= POOL_SLOTS, "more generation tasks ran at once than the llm pool has slots"
        side_by_side = 0
        for i, a in enumerate(kar):  # engines alive at the same time must hold disjoint cores
            for b in kar[i + 1:]:
                (a0, a1), (b0, b1) = a["engine_window"], b["engine_window"]
                if a0 < b1 and b0 < a1:
                    side_by_side += 1
                    assert not set(a["engine_cores"].split(",")) & set(b["engine_cores"].split(",")), (a, b)
        print(f"engine pairs side by side: {side_by_side}; cores: {[s['engine_cores'] for s in kar]}")
        if len(os.sched_getaffinity(0)) >= 2:  # two pool slots, two free cores: the first two shards overlap
            assert side_by_side >= 1
        for dag_id, r in (("augment_features", augment_run), ("retrain_ctr", retrain)):
            start, end = (datetime.fromisoformat(r[k]) for k in ("start_date", "end_date"))
            print(f"{dag_id} {r['run_type']} {r['state']} in {(end - start).total_seconds():.0f} s")

        store = FeatureStore(cfg.workdir_path / "feature_store")
        text = store.read_pandas("item_knowledge_text")
        assert len(text) == 20 and text["flag"].isin(["ok", "truncated"]).sum() >= 15
        assert store.read("user_profile_emb").schema.field("emb").type.list_size == 384
        manifests = [json.loads(p.read_text()) for p in (cfg.workdir_path / "registry").rglob("manifest.json")]
        assert manifests, "no model in the registry"
        for manifest in manifests:
            for name, version in manifest["feature_tables"].items():
                assert store.manifest(name, version)["version"] == version
        assert "AUC" in (cfg.workdir_path / "report.md").read_text()
    finally:
        leftovers = airflow.stop()
    assert leftovers == [], f"processes survived the shutdown: {leftovers}"
