"""Shared wiring constants for the DAG files (light: stdlib and the Airflow SDK only, safe at parse time)."""
from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from airflow.sdk import Asset

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = os.environ.get("LLMFA_CONFIG", str(REPO_ROOT / "configs" / "ml100k.yaml"))
# Retries cover transient worker loss in production; tests set LLMFA_TASK_RETRIES=0 so a real failure fails fast.
DEFAULT_ARGS = {"owner": "llm-feature-augmentation", "retries": int(os.environ.get("LLMFA_TASK_RETRIES", "2")),
                "retry_delay": timedelta(seconds=int(os.environ.get("LLMFA_RETRY_DELAY_S", "60")))}
LLM_POOL = "llm"  # one slot per GPU (or per CPU box): generation shards queue here, not on each other's memory

# What augment_features publishes and retrain_ctr is scheduled on.
FEATURE_ASSETS = [Asset(f"llmfa://feature_store/{name}")
                  for name in ("item_knowledge_emb", "user_profile_emb", "item_raw_emb")]


def load(config_path: str):
    """Load the run config inside a task (heavy imports stay out of DAG parsing)."""
    from configs import load_config

    return load_config(config_path)


def freeze(config_path: str) -> str:
    """Snapshot the resolved config once per DAG run and hand its path to every task.

    Tasks that each re-read the user's YAML would silently mix settings if the file changed mid-run (a shard
    generated with one max_tokens, the publish step looking for another); the snapshot is named by its digest.
    """
    import json

    cfg = load(config_path)
    path = cfg.workdir_path / "run_configs" / f"{cfg.digest()}.json"
    if not path.is_file():
        from feature_store.store import atomic_write_text

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(cfg.model_dump(mode="json"), indent=1))
    return str(path)
