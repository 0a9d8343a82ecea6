"""Every `LLMFA_*` environment variable, in one place: its name, default, what it does and who sets it.

Everything about a run (data, models, the schedule's interval) lives in the run config; an environment variable is
only for what a config cannot say: where the config is, how a deployment's Airflow schedules and routes tasks,
machine-wide paths, and values a process hands to its own children. Code reads a variable through its constant
here (`TASK_RETRIES.get()`), never by a literal name; tests/architecture/test_environment.py fails on any
`LLMFA_*` name in the tree that is not declared here. Who sets it: *user* (you, in a shell or a deployment),
*test* (the test suite), *runner* (scripts/run_dags.py, ops/local_airflow.py), *internal* (our code, for a child
process it starts). `python -m configs.environment` prints this table:

| Variable | Default | Set by | What it does |
|---|---|---|---|
| `LLMFA_CONFIG` | `configs/ml100k.yaml` | user, runner | The run config when a DAG run's `config` param is empty (read by tasks), and the config the DAG files derive augment_features' schedule from (read at parse time: stream.interval_hours and the time of day of stream.start). |
| `LLMFA_START_DATE` | stream.start - stream.interval_hours (the bootstrap interval); 2026-01-01 for a one-shot config | user, test | Parse time: the start of augment_features' first data interval (ISO date or date-time, UTC). |
| `LLMFA_END_DATE` | unset (no end) | user, test | Parse time: the start of augment_features' last data interval (ISO, UTC). |
| `LLMFA_CATCHUP` | `false` | user, test | Parse time: whether the scheduler creates the runs of past intervals (1/true/yes). |
| `LLMFA_TASK_RETRIES` | `2` | user, test, runner | Parse time: retries of every DAG task (tests: 0, so a real failure fails at once). |
| `LLMFA_RETRY_DELAY_S` | `60` | user, runner | Parse time: seconds between a DAG task's retries. |
| `LLMFA_LLM_QUEUE` | unset (the executor's default queue) | user, test | Parse time: the executor queue of the generation tasks, e.g. `llm` under CeleryExecutor. |
| `LLMFA_CACHE` | `~/.cache/llmfa` | user | Where the embedded models (and the test data wheel) are converted and kept, shared by every clone. |
| `LLMFA_CPU_SLOTS_DIR` | `<tmp>/llmfa-cpu-slots` | user, test | The machine-wide lock directory through which CPU engines claim disjoint cores. |
| `LLMFA_VENV` | unset (scripts/env.sh builds .venv) | user | scripts/env.sh: use this Python environment instead of building one. |
| `LLMFA_TORCH_INDEX` | `https://download.pytorch.org/whl/cpu` | user | scripts/env.sh: the extra package index PyTorch's CPU wheels come from. |
| `LLMFA_CLAIMED_CPU_BIND` | unset | internal | Marks a VLLM_CPU_OMP_THREADS_BIND our own process claimed, so its children claim their own cores. |
| `LLMFA_RAY_ENGINE_THREADS` | unset (claim nothing) | internal | generation.backend=ray: engine.cpu_threads, handed to each engine actor. |
| `LLMFA_RAY_CLAIM_TIMEOUT` | generation.ray.startup_timeout_s | internal | generation.backend=ray: how long an engine actor waits for free cores. |
| `LLMFA_RAY_REPORT_DIR` | unset | internal | generation.backend=ray, private Ray: where engine actors report the cores they got. |
| `LLMFA_WORKER_HOSTNAME` | unset (the machine's FQDN) | runner | ops/local_airflow.py: each local Celery worker's hostname. |
| `LLMFA_TEST_AIRFLOW_HOME_SET` | unset | test | tests/conftest.py: the session's throw-away AIRFLOW_HOME is already set. |
| `LLMFA_TEST_MARK` | unset | test | tests/augment_llm/test_marked_processes.py: marks the processes a test starts. |
| `LLMFA_TEST_PROCESS_TREE` | unset | test | tests/augment_llm/test_resume_after_kill.py: marks the process tree a test kills. |

Removed (setting one is an error where it used to be read, so a stale deployment finds out):

| Variable | Instead |
|---|---|
| `LLMFA_SCHEDULE` | augment_features' cron comes from the config (stream.interval_hours, aligned on stream.start); a one-shot config runs daily at 00:00 UTC. |
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from configs.run_config import REPO_ROOT


@dataclass(frozen=True)
class EnvVar:
    name: str
    shown: str  # the default as the table shows it
    set_by: str
    doc: str
    default: str | None = None  # a constant default (else the reader passes its computed one to `get`)

    def get(self, fallback: str | None = None) -> str | None:
        """The variable's value; unset or empty: `fallback`, else the declared default."""
        return os.environ.get(self.name) or fallback or self.default

    def is_set(self) -> bool:
        return bool(os.environ.get(self.name))


VARIABLES: dict[str, EnvVar] = {}
REMOVED: dict[str, str] = {}


def _var(name: str, shown: str, set_by: str, doc: str, default: str | None = None) -> EnvVar:
    VARIABLES[name] = var = EnvVar(name, shown or f"`{default}`", set_by, doc, default)
    return var


def _removed(name: str, instead: str) -> str:
    REMOVED[name] = instead
    return name


CONFIG = _var("LLMFA_CONFIG", "`configs/ml100k.yaml`", "user, runner",
              "The run config when a DAG run's `config` param is empty (read by tasks), and the config the DAG "
              "files derive augment_features' schedule from (read at parse time: stream.interval_hours and the "
              "time of day of stream.start).", str(REPO_ROOT / "configs" / "ml100k.yaml"))
START_DATE = _var("LLMFA_START_DATE", "stream.start - stream.interval_hours (the bootstrap interval); 2026-01-01 "
                  "for a one-shot config", "user, test",
                  "Parse time: the start of augment_features' first data interval (ISO date or date-time, UTC).")
END_DATE = _var("LLMFA_END_DATE", "unset (no end)", "user, test",
                "Parse time: the start of augment_features' last data interval (ISO, UTC).")
CATCHUP = _var("LLMFA_CATCHUP", "", "user, test",
               "Parse time: whether the scheduler creates the runs of past intervals (1/true/yes).", "false")
TASK_RETRIES = _var("LLMFA_TASK_RETRIES", "", "user, test, runner",
                    "Parse time: retries of every DAG task (tests: 0, so a real failure fails at once).", "2")
RETRY_DELAY_S = _var("LLMFA_RETRY_DELAY_S", "", "user, runner",
                     "Parse time: seconds between a DAG task's retries.", "60")
LLM_QUEUE = _var("LLMFA_LLM_QUEUE", "unset (the executor's default queue)", "user, test",
                 "Parse time: the executor queue of the generation tasks, e.g. `llm` under CeleryExecutor.")
CACHE = _var("LLMFA_CACHE", "`~/.cache/llmfa`", "user",
             "Where the embedded models (and the test data wheel) are converted and kept, shared by every clone.")
CPU_SLOTS_DIR = _var("LLMFA_CPU_SLOTS_DIR", "`<tmp>/llmfa-cpu-slots`", "user, test",
                     "The machine-wide lock directory through which CPU engines claim disjoint cores.")
VENV = _var("LLMFA_VENV", "unset (scripts/env.sh builds .venv)", "user",
            "scripts/env.sh: use this Python environment instead of building one.")
TORCH_INDEX = _var("LLMFA_TORCH_INDEX", "`https://download.pytorch.org/whl/cpu`", "user",
                   "scripts/env.sh: the extra package index PyTorch's CPU wheels come from.")
CLAIMED_CPU_BIND = _var("LLMFA_CLAIMED_CPU_BIND", "unset", "internal",
                        "Marks a VLLM_CPU_OMP_THREADS_BIND our own process claimed, so its children claim their "
                        "own cores.")
RAY_ENGINE_THREADS = _var("LLMFA_RAY_ENGINE_THREADS", "unset (claim nothing)", "internal",
                          "generation.backend=ray: engine.cpu_threads, handed to each engine actor.")
RAY_CLAIM_TIMEOUT = _var("LLMFA_RAY_CLAIM_TIMEOUT", "generation.ray.startup_timeout_s", "internal",
                         "generation.backend=ray: how long an engine actor waits for free cores.")
RAY_REPORT_DIR = _var("LLMFA_RAY_REPORT_DIR", "unset", "internal",
                      "generation.backend=ray, private Ray: where engine actors report the cores they got.")
WORKER_HOSTNAME = _var("LLMFA_WORKER_HOSTNAME", "unset (the machine's FQDN)", "runner",
                       "ops/local_airflow.py: each local Celery worker's hostname.")
TEST_AIRFLOW_HOME_SET = _var("LLMFA_TEST_AIRFLOW_HOME_SET", "unset", "test",
                             "tests/conftest.py: the session's throw-away AIRFLOW_HOME is already set.")
TEST_MARK = _var("LLMFA_TEST_MARK", "unset", "test",
                 "tests/augment_llm/test_marked_processes.py: marks the processes a test starts.")
TEST_PROCESS_TREE = _var("LLMFA_TEST_PROCESS_TREE", "unset", "test",
                         "tests/augment_llm/test_resume_after_kill.py: marks the process tree a test kills.")

SCHEDULE_REMOVED = _removed("LLMFA_SCHEDULE", "augment_features' cron comes from the config (stream.interval_hours, "
                            "aligned on stream.start); a one-shot config runs daily at 00:00 UTC.")


def reject_removed(name: str) -> None:
    """A removed variable that is still set: a ValueError saying what replaced it."""
    if os.environ.get(name):
        raise ValueError(f"{name} is no longer read: {REMOVED[name]} Unset it.")


def table() -> str:
    """The Markdown tables of the module docstring, generated from the declarations."""
    rows = ["| Variable | Default | Set by | What it does |", "|---|---|---|---|"]
    rows += [f"| `{v.name}` | {v.shown} | {v.set_by} | {v.doc} |" for v in VARIABLES.values()]
    rows += ["", "Removed (setting one is an error where it used to be read, so a stale deployment finds out):", "",
             "| Variable | Instead |", "|---|---|"]
    rows += [f"| `{name}` | {instead} |" for name, instead in REMOVED.items()]
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
