"""Feast `get_historical_features` (file offline store) on the same data as pit_ours.py; run with Feast's venv.

    /root/.cache/feast-bench-venv/bin/python bench/feature_store/pit_feast.py N_ENTITIES N_VERSIONS N_LABELS
Prints a RESULT JSON line: seconds for get_historical_features(...).to_df() and the process's peak RSS.
"""
from __future__ import annotations

import os
import sys
import warnings
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
from bench_common import Timer, emit, make_data, peak_rss_mb  # noqa: E402

warnings.filterwarnings("ignore")


def feast_store(repo: Path, items_path: Path, online_path: Path | None = None):
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.repo_config import RepoConfig
    from feast.types import Array, Float32
    repo.mkdir(parents=True, exist_ok=True)
    config = RepoConfig(project="bench", provider="local", registry=str(repo / "registry.db"),
                        repo_path=str(repo), entity_key_serialization_version=3,
                        offline_store={"type": "file"},
                        online_store={"type": "sqlite", "path": str(online_path or repo / "online.db")})
    fs = FeatureStore(config=config)
    item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.INT64)
    src = FileSource(path=str(items_path), timestamp_field="event_timestamp",
                     created_timestamp_column="created_timestamp")
    fv = FeatureView(name="item_emb", entities=[item], ttl=timedelta(days=3650), source=src, online=True,
                     schema=[Field(name="emb", dtype=Array(Float32)), Field(name="pop", dtype=Float32)])
    fs.apply([item, fv])
    return fs


def main(n_entities: int, n_versions: int, n_labels: int) -> None:
    p = make_data(n_entities, n_versions, n_labels)
    fs = feast_store(p["dir"] / "feast_repo", p["items_list"])
    labels = pq.read_table(p["labels"]).to_pandas()
    rss_before = peak_rss_mb()
    with Timer() as t:
        df = fs.get_historical_features(entity_df=labels, features=["item_emb:emb", "item_emb:pop"]).to_df()
    emit({"bench": "pit", "impl": "feast", "entities": n_entities, "versions": n_versions, "labels": n_labels,
          "seconds": round(t.seconds, 3), "peak_rss_mb": round(peak_rss_mb(), 1),
          "rss_before_join_mb": round(rss_before, 1), "missing": int(df["emb"].isna().sum()), "rows": len(df)})
    if os.environ.get("FEAST_OUT"):  # for compare_feast.py
        df[["item_id", "event_timestamp", "label", "pop"]].to_parquet(os.environ["FEAST_OUT"])


if __name__ == "__main__":
    main(*map(int, sys.argv[1:4]))
