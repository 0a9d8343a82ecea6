"""Cross-check: our point_in_time_join and Feast's get_historical_features give the same feature values.

    python bench/feature_store/compare_feast.py [N_ENTITIES N_VERSIONS N_LABELS]   (default 2000 5 20000)
Runs Feast (its venv) on small data, then ours, and compares `pop` per label row (matched on item, time, label).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
from bench_common import emit, make_data  # noqa: E402
from pit_ours import SPEC  # noqa: E402

from feature_store import FeatureStore, point_in_time_join  # noqa: E402

FEAST_PY = os.environ.get("FEAST_PY", "/root/.cache/feast-bench-venv/bin/python")


def main(n_entities: int = 2000, n_versions: int = 5, n_labels: int = 20000) -> None:
    p = make_data(n_entities, n_versions, n_labels)
    out = p["dir"] / "feast_out.parquet"
    subprocess.run([FEAST_PY, str(HERE / "pit_feast.py"), str(n_entities), str(n_versions), str(n_labels)],
                   check=True, env={**os.environ, "FEAST_OUT": str(out)}, stdout=subprocess.DEVNULL)
    feast = pd.read_parquet(out)
    store = FeatureStore(p["dir"] / "store")
    if not store.tables():
        store.publish(SPEC, pq.read_table(p["items"]), recipe={"bench": "pit", "items": str(p["items"])})
    labels = pq.read_table(p["labels"]).to_pandas()
    ours = point_in_time_join(labels, store, {"item_emb": "latest"}).to_pandas()
    ours.loc[ours["item_emb__missing"], "pop"] = np.nan
    keys = ["item_id", "event_timestamp", "label"]
    ours["k"] = ours.groupby(keys).cumcount()
    feast = feast.sort_values(keys + ["pop"]).assign(k=lambda d: d.groupby(keys).cumcount())
    m = ours.merge(feast, on=keys + ["k"], how="left", suffixes=("_ours", "_feast"), indicator=True)
    in_feast = m["_merge"] == "both"
    same = np.isclose(m["pop_ours"], m["pop_feast"], equal_nan=True) & in_feast
    first_ts = pd.Timestamp(pq.read_table(p["items"], columns=["event_timestamp"])
                            .column(0).to_pandas().min())
    dropped = m[~in_feast]
    emit({"bench": "feast_crosscheck", "labels": n_labels, "feast_rows": len(feast), "ours_rows": len(ours),
          "equal_where_feast_has_row": int(same.sum()), "feast_rows_compared": int(in_feast.sum()),
          "labels_missing_from_feast": len(dropped),
          "of_which_before_first_feature_time_or_unknown_key": int(
              ((dropped["event_timestamp"] < first_ts) | dropped["item_emb__missing"]).sum())})


if __name__ == "__main__":
    main(*map(int, sys.argv[1:4]))
