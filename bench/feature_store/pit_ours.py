"""Point-in-time join with our store (DuckDB ASOF on keys/times, Arrow gather for vectors); one size per process.

    python bench/feature_store/pit_ours.py N_ENTITIES N_VERSIONS N_LABELS [pandas|arrow]
Labels are passed as a pandas DataFrame (as Feast needs) by default, or as the Arrow table read from Parquet.
Prints a RESULT JSON line: seconds for point_in_time_join (labels already in memory), peak RSS of the process.
"""
from __future__ import annotations

import sys

import pyarrow.parquet as pq
from bench_common import Timer, emit, make_data, peak_rss_mb  # noqa: E402

from feature_store import Feature, FeatureStore, TableSpec, point_in_time_join, vector_matrix  # noqa: E402

SPEC = TableSpec("item_emb", "item", ("item_id",), (Feature("emb", "vector", dim=64), Feature("pop", "float32")))


def main(n_entities: int, n_versions: int, n_labels: int, labels_format: str = "pandas") -> None:
    p = make_data(n_entities, n_versions, n_labels)
    store = FeatureStore(p["dir"] / "store")
    recipe = {"bench": "pit", "items": str(p["items"])}
    if not (store.root / "item_emb").exists():
        store.publish(SPEC, pq.read_table(p["items"]), recipe=recipe)
    version = store.resolve("item_emb")
    labels = pq.read_table(p["labels"])
    if labels_format == "pandas":
        labels = labels.to_pandas()
    rss_before = peak_rss_mb()
    with Timer() as t:
        out = point_in_time_join(labels, store, {"item_emb": version}, prefix_features=True)
        X = vector_matrix(out["item_emb__emb"])
    emit({"bench": "pit", "impl": "ours", "labels_format": labels_format, "entities": n_entities, "versions": n_versions, "labels": n_labels,
          "seconds": round(t.seconds, 3), "peak_rss_mb": round(peak_rss_mb(), 1),
          "rss_before_join_mb": round(rss_before, 1), "missing": int(out["item_emb__missing"].to_numpy().sum()),
          "checksum": float(X[:1000].sum())})


if __name__ == "__main__":
    main(*map(int, sys.argv[1:4]), *sys.argv[4:5])
