"""Retrain stage: build the CTR dataset from pinned feature tables, train every backbone x variant, write the
report. The DAG `retrain_ctr` calls `retrain`; so does the CLI:

    python -m models retrain --config configs/ml100k.yaml

Outputs go to <workdir>/models/<run id>/ (one directory per model + manifest.json pinning the exact feature-table
versions and config) and <workdir>/reports/<run id>/report.md + report.png; <workdir>/report.md points to the
newest report.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pandas as pd

from augment.config import RunConfig
from feature_store import FeatureStore, canonical_json
from feature_store.lineage import peak_rss_mb, read_stats, source_digest, stage_timer
from models.ctr_dataset import VARIANTS, build_ctr_dataset
from models.report import write_report
from models.train_variants import train_variants

log = logging.getLogger(__name__)


def _atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def report_stats(stats: dict[str, dict], versions: dict[str, str], cfg: RunConfig) -> dict:
    """Fold per-stage stats files into what the report shows."""
    rows: dict[str, int] = {}
    for name in ("ingest", "split"):
        rows.update(stats.get(name, {}).get("rows", {}))
    generation = {}
    for kind in ("item", "user"):
        shards = [s for k, s in stats.items() if k.startswith(f"generate-{kind}-")]
        if not shards:
            continue
        secs = sum(s["seconds"] for s in shards)
        prompts = sum(s["generated"] for s in shards)
        out_tok = sum(s["output_tokens"] for s in shards)
        generation[kind] = {"prompts": sum(s["prompts"] for s in shards), "generated": prompts,
                            "skipped": sum(s["skipped"] for s in shards),
                            "prompt_tokens": sum(s["prompt_tokens"] for s in shards), "output_tokens": out_tok,
                            "seconds": round(secs, 1), "prompts_per_s": prompts / secs if secs else 0.0,
                            "output_tokens_per_s": out_tok / secs if secs else 0.0}
        text = stats.get(f"publish-{kind}-text", {})
        generation[kind].update({k: text[k] for k in ("truncated", "empty") if k in text})
    stages: dict[str, float] = {}
    for key, s in stats.items():
        group = "generate-" + key.split("-")[1] if key.startswith("generate-") else key
        stages[group] = round(stages.get(group, 0.0) + float(s.get("seconds", 0.0)), 1)
    peak = max([s.get("peak_rss_mb", 0.0) for s in stats.values()] + [peak_rss_mb()])
    return {"rows": rows, "generation": generation, "stages": stages, "peak_rss_mb": peak,
            "feature_tables": versions, "config_digest": cfg.digest()}


def retrain(cfg: RunConfig, backbones: tuple[str, ...] = ("lightgbm", "deepfm")) -> dict:
    """Train every backbone x variant on the latest (or pinned) tables; returns paths and the results table."""
    work = cfg.workdir_path
    store = FeatureStore(work / "feature_store")
    stats_path = work / "stats"
    with stage_timer(stats_path, "retrain") as rec:
        built = build_ctr_dataset(store, threads=cfg.train.threads)
        run_id = canonical_digest({"tables": built.versions, "train": cfg.train.model_dump(mode="json"),
                                   "code": source_digest("models")})
        model_root = work / "models" / run_id
        tmp_root = work / "models" / f".tmp-{run_id}-{os.getpid()}"
        shutil.rmtree(tmp_root, ignore_errors=True)
        results = train_variants(built.data, VARIANTS, cfg.train, tmp_root, backbones=backbones)
        results["model_dir"] = results["model_dir"].str.replace(str(tmp_root), str(model_root), regex=False)
        manifest = {"run_id": run_id, "feature_tables": built.versions, "variants": VARIANTS,
                    "missing_feature_rows": built.missing, "config": cfg.model_dump(mode="json"),
                    "code": {"models": source_digest("models")},
                    "rows": {s: len(getattr(built.data, s)) for s in ("train", "valid", "test")}}
        _atomic_text(tmp_root / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
        results.to_parquet(tmp_root / "results.parquet")
        # The run directory becomes visible whole; a re-run of the same recipe replaces it.
        if model_root.exists():
            shutil.rmtree(model_root)
        os.replace(tmp_root, model_root)
        rec["rows"] = manifest["rows"]
        rec["run_id"] = run_id
    stats = report_stats(read_stats(stats_path), built.versions, cfg)
    report_dir = work / "reports" / run_id
    report = write_report(report_dir, results, stats)
    _atomic_text(work / "report.md", f"Newest report: {report}\n\n" + report.read_text())
    log.info("report: %s", report)
    return {"run_id": run_id, "model_dir": str(model_root), "report": str(report),
            "png": str(report.with_suffix(".png")), "results": results_summary(results)}


def canonical_digest(obj: dict) -> str:
    import hashlib

    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:12]


def results_summary(results: pd.DataFrame) -> list[dict]:
    cols = ["backbone", "variant", "seed", "valid_auc", "valid_logloss", "test_auc", "test_logloss"]
    return results[cols].round(4).to_dict(orient="records")
