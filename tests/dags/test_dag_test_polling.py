"""The main job's runner silences dag.test()'s once-a-second "No tasks to run" warning only while tasks run."""
import logging
from dataclasses import dataclass

import pytest
from airflow.utils.state import TaskInstanceState

from ops.local_airflow import QuietDagTestPolling, quiet_dag_test_polling

pytestmark = pytest.mark.timeout(30)


@dataclass(frozen=True)
class FakeTI:  # stands in for the TaskInstance objects dag.test() passes to its warning
    task_id: str
    state: TaskInstanceState | None


def _warn(tis):
    logging.getLogger("airflow.sdk.definitions.dag").warning("No tasks to run. unrunnable tasks: %s", tis)


def test_poll_warning_dropped_while_a_task_runs_and_kept_at_a_dead_end(caplog):
    quiet_dag_test_polling()
    quiet_dag_test_polling()
    logger = logging.getLogger("airflow.sdk.definitions.dag")
    assert sum(isinstance(f, QuietDagTestPolling) for f in logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger="airflow.sdk.definitions.dag"):
        _warn({FakeTI("generate_item", TaskInstanceState.RUNNING), FakeTI("publish", None)})
        assert not caplog.records
        _warn({FakeTI("publish", None), FakeTI("encode", TaskInstanceState.UPSTREAM_FAILED)})
        logger.warning("something else")
    assert [r.getMessage().split(".")[0] for r in caplog.records] == ["No tasks to run", "something else"]
