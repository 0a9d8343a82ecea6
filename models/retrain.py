"""Retrain stage: build the CTR dataset from pinned feature tables, train every backbone x variant, write the
report. The DAG `retrain_ctr` calls `retrain(cfg, versions)` with the exact table versions its upstream tasks
wrote; the CLI resolves `latest` for people (or takes `--version table=ver`):

    python -m models retrain --config configs/ml100k.yaml [--version item_knowledge_emb=<ver> ...]

Backbones, variants, the feature spec (models/feature_spec.py), seeds and the promotion margin come from
cfg.train; `tables_needed(cfg.train)` lists the tables `versions` must cover. Every model lands in
the registry, <workdir>/registry/<model_name>/<run id>/<backbone>/<variant>/seed=<s>/ (weights, feature map,
metrics, manifest pinning the exact feature-table versions and config); the best model on VALID AUC goes through
the promotion gate (models/registry.py). The report is <workdir>/reports/<run id>/report.md + report.png;
<workdir>/report.md points to the newest report.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from common.files import atomic_write_json, atomic_write_text, canonical_json, json_digest
from common.lineage import code_digest
from common.stage_stats import peak_rss_mb, read_stats, stage_timer
from configs import RunConfig, StreamConfig
from feature_store import FeatureStore
from feature_store.definitions import ID_MAPS
from feature_store.locations import open_run_store
from feature_store.maintenance import lineage
from models.dataset_builder import BuiltDataset, build_ctr_dataset, dataset_versions
from models.feature_refresh import refresh_champion, serving_features_path
from models.feature_spec import Variant, dataset_options, resolve_variants, run_entries, spec_entries, tables_needed
from models.metrics import auc, ctr_metrics, json_safe, paired_auc_diff
from models.registry import champion_info, promote, read_model_manifest, registry_root, write_model_manifest
from models.report import read_predictions, write_report
from models.run_history import history_markdown, record_run
from models.train_variants import train_variants
from models.variant_roles import gate_eligible

log = logging.getLogger(__name__)
# The code that decides what a trained model is: this module and every in-repo module it imports, directly or not
# (common/lineage.py). The run id and every manifest carry its digest.
MODEL_CODE = "models.retrain"


def model_code_digest() -> str:
    return code_digest(MODEL_CODE)




class MissingTables(ValueError):
    """A table the run's variants read has no version in the store (a one-line error, not a traceback)."""


def latest_versions(store: FeatureStore, cfg: RunConfig, pinned: Mapping[str, str] | None = None) -> dict:
    """For people at the CLI: `latest` of every table the config's feature spec needs, unless pinned. A table
    that is neither pinned nor in the store is a MissingTables error naming it, the variants that read it and how
    to make it."""
    pinned = dict(pinned or {})
    have = set(store.tables())
    missing = [t for t in tables_needed(cfg.train) if t not in pinned and t not in have]
    if missing:
        variants = resolve_variants(cfg.train)
        twin_of = {v.twin: name for name, v in variants.items() if v.twin and name in cfg.train.variants}

        def reader(name: str) -> str:
            if name in cfg.train.variants or name not in twin_of:
                return name
            return f"{name} (the no-LLM twin of {twin_of[name]}, trained with it)"

        readers = {t: [reader(name) for name, v in variants.items() if t in tables_needed(cfg.train, [v])]
                   for t in missing}
        where = store.location().get("uri", "the feature store")
        raise MissingTables(
            "; ".join(f"table {t!r} has no version in {where} (read by variant(s) {', '.join(readers[t])})"
                      for t in missing)
            + ": make it with `python -m augment all --config <this config>` (or the stage that writes it), "
              "or leave those variants out of train.variants")
    out = {t: pinned.get(t) or store.resolve(t) for t in tables_needed(cfg.train)}
    # The id maps tell serving how requests spell ids (string ids are hashed); a store without them is int ids.
    out.update({t: pinned.get(t) or store.resolve(t) for t in ID_MAPS.values() if t in pinned or t in have})
    return out


def run_stats(stats: dict[str, dict], made_from: Mapping[str, str]) -> dict[str, dict]:
    """The stage records that belong to this run: those that wrote, or generated from, a version the trained
    tables were made from (`made_from`: version -> table, feature_store.maintenance.lineage), plus the retrain's
    own. A workdir shared by two datasets or configs holds the other one's records too; they are left out."""
    def pins(rec: dict) -> set[str]:
        return {*(rec.get("versions") or {}).values(), *(rec.get("inputs") or {}).values()}

    return {name: rec for name, rec in stats.items()
            if name in ("retrain", "generation_variance") or pins(rec) & made_from.keys()}


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
    data = {**stats.get("ingest", {}).get("data", {}),
            **({"negatives": stats["split"]["negatives"]} if stats.get("split", {}).get("negatives") else {})}
    return {"rows": rows, "data": data, "generation": generation, "stages": stages, "peak_rss_mb": peak,
            "prompt_mode": stats.get("prompts", {}).get("prompt_mode"),
            "encoder_probe": stats.get("encoder-probe"),  # `python -m augment encoder-probe`, when it ran
            "feature_tables": versions, "config_digest": cfg.digest(),
            # <stats dir>/generation_variance.json, written by `python -m augment generation-variance`
            "generation_variance": stats.get("generation_variance")}


def _model_manifest(row: dict, run_id: str, built, cfg: RunConfig, variant: Variant, valid_fp: str,
                    store_location: dict) -> dict:
    # feature_store: where the pinned versions live (serving reads them there when it is an object store)
    return {"run_id": run_id, "backbone": row["backbone"], "variant": row["variant"], "seed": int(row["seed"]),
            "groups": list(variant.groups), "adaptor_groups": list(variant.adaptor_groups),
            "feature_tables": dict(built.versions), "feature_store": store_location,
            "valid_fingerprint": valid_fp,
            "metrics": {k: v for k, v in row.items() if k.startswith(("valid_", "test_"))},
            "config": cfg.model_dump(mode="json"), "code": {"models": model_code_digest()},
            "weights": sorted(p.name for p in Path(row["model_dir"]).iterdir())}


def valid_fingerprint(frame: pd.DataFrame) -> str:
    """Which labelled rows form the valid set: two models are compared only on the same fingerprint."""
    cols = [c for c in ("user_id", "item_id", "timestamp", "label") if c in frame]
    return json_digest({"rows": pd.util.hash_pandas_object(frame[cols], index=False).astype("int64")
                             .tolist()}, length=12)


def make_valid_scorer(store: FeatureStore, built: BuiltDataset, cfg: RunConfig, part: str = "valid",
                      scores: dict | None = None):
    """AUC of any registered model on THIS run's `part` rows (valid; the newest interval, test, in a daily run),
    each model with its own pinned features: what serving would answer with it (the server loads a model with
    the versions its manifest pins). `scores` (if given) collects model_dir -> AUC, GAUC, rows, and the cold
    view (rows of users with no training row)."""
    cache: dict[str, BuiltDataset] = {}
    expected = valid_fingerprint(getattr(built.data, part).frame)
    seen_users = set(built.data.train.frame[built.data.user_col].tolist())

    def score(model) -> float:
        # the model's own spec entries and pinned versions; this run's labels (interaction_splits)
        entries = spec_entries(model.feature_map)
        tables = {"interaction_splits", *(e.source for e in entries)}
        pins = {**model.feature_tables, "interaction_splits": built.versions["interaction_splits"]}
        pins = {k: v for k, v in pins.items() if k in tables}
        options = dataset_options(cfg.train, model.feature_map)
        key = canonical_json({"pins": pins, "features": [e.model_dump(mode="json") for e in entries], **options})
        if key not in cache:
            cache[key] = build_ctr_dataset(store, pins, entries, threads=cfg.train.threads,
                                           **options)
        data = cache[key].data
        rows = getattr(data, part)
        if valid_fingerprint(rows.frame) != expected:
            raise ValueError(f"{part} rows differ from this run's {part} set")
        y, p = rows.frame[data.label].to_numpy(), model.predict_split(rows)
        users = rows.frame[data.user_col].to_numpy()
        if scores is not None:
            cold = ~np.isin(users, list(seen_users))
            scores[str(model.model_dir)] = {**ctr_metrics(y, p, users), "rows": int(len(y)),
                                            "cold_rows": int(cold.sum()), "cold_auc": auc(y[cold], p[cold]),
                                            "labels": y, "predictions": p}
        return auc(y, p)

    return score


def retrain(cfg: RunConfig, versions: Mapping[str, str], backbones: tuple[str, ...] | None = None,
            promote_best: bool = True) -> dict:
    """Train every backbone x variant x seed on EXACTLY the table versions given (table -> version; every table
    in `tables_needed(cfg.train)` is required, extra ones are ignored), register every model, run the promotion
    gate on the best-on-valid model, write the report. Returns run_id, model_dir (the run directory), report,
    png, promotion (the gate decision or None), results (one row per model) and feature_tables (what was read)."""
    work = cfg.workdir_path
    tc = cfg.train
    backbones = tuple(backbones or tc.backbones)
    store = open_run_store(cfg)
    cfg = interval_config(cfg, store, versions)
    stats_path = cfg.stats_path
    gate_part = "test" if cfg.stream is not None else "valid"  # a daily run gates on the newest interval
    variants = resolve_variants(tc)
    entries = run_entries(tc, backbones)
    with stage_timer(stats_path, "retrain") as rec:
        tables = dataset_versions(versions, entries)
        run_id = json_digest({"tables": tables, "train": tc.model_dump(mode="json"),
                              "backbones": backbones, "code": model_code_digest()}, length=12)
        reg = work / "registry" / tc.model_name
        run_root = reg / run_id
        done = _finished_run(work, run_root, promote_best)
        if done is not None:  # the same tables, settings and code were trained and gated before: same models
            rec.update({"run_id": run_id, "skipped": f"nothing new since run {run_id}"})
            log.info("retrain: nothing new since run %s (same table versions, train config and code); "
                     "no training", run_id)
            return done
        built = build_ctr_dataset(store, versions, entries, threads=tc.threads, **dataset_options(tc))
        tmp_root = reg / f".tmp-{run_id}-{os.getpid()}"
        shutil.rmtree(tmp_root, ignore_errors=True)
        results = train_variants(built.data, variants, tc, tmp_root, backbones=backbones)
        fp = valid_fingerprint(built.data.valid.frame)
        for row in results.to_dict(orient="records"):
            manifest = _model_manifest(row, run_id, built, cfg, variants[row["variant"]], fp, store.location())
            write_model_manifest(Path(row["model_dir"]), manifest)
        results["model_dir"] = results["model_dir"].str.replace(str(tmp_root), str(run_root), regex=False)
        run_manifest = {"run_id": run_id, "feature_tables": built.versions, "feature_store": store.location(),
                        "variants": {k: asdict(v) for k, v in variants.items()}, "backbones": list(backbones),
                        "missing_feature_rows": built.missing, "config": cfg.model_dump(mode="json"),
                        "code": {"models": model_code_digest()}, "valid_fingerprint": fp,
                        "rows": {s: len(getattr(built.data, s)) for s in ("train", "valid", "test")}}
        results.to_parquet(tmp_root / "results.parquet")
        atomic_write_json(tmp_root / "run.json", json_safe(run_manifest))
        # The run directory becomes visible whole; a re-run of the same recipe replaces it (unless it holds the
        # champion: then the old directory stays and this run's copy is dropped, the gate sees the same model).
        champ = champion_info(work, tc.model_name)
        if run_root.exists() and champ and champ["model_path"].split("/")[0] == run_id:
            shutil.rmtree(tmp_root)
        else:
            if run_root.exists():
                shutil.rmtree(run_root)
            os.replace(tmp_root, run_root)
        decision = None
        gate_scores: dict[str, dict] = {}
        if promote_best:
            # never an LLM-derived model whose variant loses to its no-LLM twin on valid (variant_roles)
            best = results[gate_eligible(results)].sort_values(["valid_auc", "backbone", "variant", "seed"],
                                                               ascending=[False, True, True, True]).iloc[0]
            decision = promote(work, tc.model_name, best["model_dir"],
                               make_valid_scorer(store, built, cfg, gate_part, gate_scores),
                               margin=tc.promotion_margin, on=gate_part, rule=tc.promotion_rule,
                               paired=paired_gate(gate_scores))
            if cfg.stream is not None:
                decision["window"] = gate_window(work, cfg, store, decision, int(len(built.data.test)))
                champ = champion_info(work, tc.model_name)
                if not cfg.stream.fresh_features:
                    serving_features_path(work, tc.model_name).unlink(missing_ok=True)
                elif champ:  # the champion (kept or new) serves with this run's compatible feature versions
                    served = refresh_champion(work, tc.model_name, champ["model_path"], store, built.versions)
                    decision["serving_features"] = {k: served[k] for k in ("refreshed", "refused")}
                    log.info("serving features: refreshed %s, refused %s", sorted(served["refreshed"]),
                             served["refused"])
            run_manifest["promotion"] = decision
            atomic_write_json(run_root / "run.json", json_safe(run_manifest))
        rec["rows"] = run_manifest["rows"]
        rec["run_id"] = run_id
    stats = report_stats(run_stats(read_stats(stats_path), lineage(store, built.versions)), built.versions, cfg)
    stats["promotion"] = decision
    if cfg.stream is not None and decision is not None:
        history_entry(work, cfg, store, built, run_id, decision, gate_scores, results, stats, read_stats(stats_path))
        stats["history"] = history_markdown(work)
    report_dir = work / "reports" / run_id
    report = write_report(report_dir, results, stats, read_predictions(run_root))
    atomic_write_text(work / "report.md", f"Newest report: {report}\n\n" + report.read_text())
    log.info("report: %s", report)
    return {"run_id": run_id, "model_dir": str(run_root), "report": str(report),
            "png": str(report.with_suffix(".png")), "promotion": decision, "results": results_summary(results),
            "feature_tables": dict(built.versions)}



def paired_gate(scores: dict) -> Callable:
    """The gate's paired bootstrap interval of two models that make_valid_scorer(..., scores) scored on the same
    rows (registry.promote calls it after scoring both)."""
    def paired(challenger, champion) -> dict:
        a, b = scores[str(challenger.model_dir)], scores[str(champion.model_dir)]
        return paired_auc_diff(a["labels"], a["predictions"], b["predictions"])
    return paired


def training_end(store: FeatureStore, splits_version: str) -> datetime | None:
    """Where the training rows of the daily run that made `splits_version` end (its valid set starts), or None
    for a one-shot split."""
    stream = store.manifest("interaction_splits", splits_version).get("recipe", {}).get("stream")
    return StreamConfig(**stream).valid_from if stream else None


def gate_window(work: Path, cfg: RunConfig, store: FeatureStore, decision: Mapping, rows: int) -> dict:
    """The gate's window as the report and the history name it. A champion made with a shorter window (or a
    longer valid span) may have trained on rows of this window: the comparison then favours it, and says so."""
    window = {"intervals": cfg.stream.test_intervals, "from": cfg.stream.test_from.isoformat(),
              "to": cfg.stream.require_end().isoformat(), "rows": rows, "champion_trained_on_window": False}
    champ = (decision.get("champion") or {}).get("model_path")
    if champ:
        pins = read_model_manifest(registry_root(work) / cfg.train.model_name / champ).get("feature_tables", {})
        end = training_end(store, pins["interaction_splits"]) if "interaction_splits" in pins else None
        window["champion_trained_on_window"] = bool(end is not None and end > cfg.stream.test_from)
    return window


def interval_config(cfg: RunConfig, store: FeatureStore, versions: Mapping[str, str]) -> RunConfig:
    """A daily config gets the interval end of the labels it trains on (their recipe names it): the retrain belongs
    to exactly that augment run, whatever the clock or the triggering event's time says."""
    if cfg.stream is None:
        return cfg
    label_version = versions.get("interaction_splits")
    recipe = store.manifest("interaction_splits", label_version).get("recipe", {}) if label_version else {}
    if "stream" not in recipe:
        raise ValueError(f"interaction_splits@{label_version} was not made by a daily (stream) run: retrain it with "
                         "the config that made it")
    return cfg.with_stream_end(datetime.fromisoformat(recipe["stream"]["end"]))


def history_entry(work: Path, cfg: RunConfig, store: FeatureStore, built: BuiltDataset, run_id: str, decision: dict,
                  scores: Mapping[str, dict], results: pd.DataFrame, stats: Mapping, stage_stats: Mapping) -> None:
    """One row of the daily history (models/run_history.py): the interval, what it cost, and how challenger and
    champion ranked the newest interval."""
    base = registry_root(work) / cfg.train.model_name
    challenger = scores.get(str((base / decision["challenger"]["model_path"]).resolve()), {})
    champ_path = (decision.get("champion") or {}).get("model_path")
    champion = scores.get(str((base / champ_path).resolve()), {}) if champ_path else {}
    if decision.get("reason") == "challenger is already the champion":
        champion = challenger
    gen = stats.get("generation", {})
    diff = {}
    if champion and champion is not challenger:  # the gate's difference, with its paired bootstrap interval
        diff = paired_auc_diff(challenger["labels"], challenger["predictions"], champion["predictions"])
    augment_s = sum(float(v.get("seconds", 0.0)) for k, v in stage_stats.items() if k != "retrain")
    test = built.data.test.frame
    end = cfg.stream.require_end()
    record_run(work, {
        "end": end.isoformat(), "kind": cfg.stream.run_kind, "run_id": run_id,
        # the interactions the run brought: its interval (the newest slice), or everything for the bootstrap
        "new_interactions": _interval_rows(store, built, cfg),
        "test_rows": int(len(test)), "test_users": int(test[built.data.user_col].nunique()),
        "window_intervals": cfg.stream.test_intervals,
        "profiles_written": int(gen.get("user", {}).get("generated", 0)),
        "items_written": int(gen.get("item", {}).get("generated", 0)),
        "llm_calls": int(sum(g.get("generated", 0) for g in gen.values())),  # prompts sent to the LLM
        # what a full rerun of this interval would send to the LLM: every prompt of the run's tables
        "prompts_total": int(sum(g.get("prompts", 0) for g in gen.values())),
        "prompt_tokens": int(sum(g.get("prompt_tokens", 0) for g in gen.values())),
        "output_tokens": int(sum(g.get("output_tokens", 0) for g in gen.values())),
        "augment_seconds": round(augment_s, 1),
        "retrain_seconds": round(float(stage_stats.get("retrain", {}).get("seconds", 0.0)), 1),
        "models_trained": int(len(results)),
        "challenger": decision["challenger"]["model_path"],
        "challenger_auc": challenger.get("auc"), "challenger_gauc": challenger.get("gauc"),
        "champion": champ_path, "champion_auc": champion.get("auc"), "champion_gauc": champion.get("gauc"),
        "cold_rows": challenger.get("cold_rows"), "challenger_cold_auc": challenger.get("cold_auc"),
        "delta_auc": diff.get("delta"), "delta_low": diff.get("low"), "delta_high": diff.get("high"),
        "promoted": bool(decision["promoted"]), "reason": decision.get("reason", ""),
        # the tables the champion serves with newer versions than it was trained on (fresh features)
        "features_refreshed": sorted((decision.get("serving_features") or {}).get("refreshed", {})),
        "features_refused": sorted((decision.get("serving_features") or {}).get("refused", {})),
    })


def _interval_rows(store: FeatureStore, built: BuiltDataset, cfg: RunConfig) -> int:
    if cfg.stream.run_kind == "bootstrap":
        return int(store.manifest("interaction_splits", built.versions["interaction_splits"])["rows"])
    # the newest interval's logged rows only: the gate's window (split "test") may span several intervals, and
    # sampled negatives are not interactions
    rows = store.read_pandas("interaction_splits", built.versions["interaction_splits"],
                             columns=["timestamp", "sampled"])
    new = rows["timestamp"] >= pd.Timestamp(cfg.stream.require_end() - cfg.stream.interval)
    return int((new & ~rows["sampled"].astype(bool)).sum())


def _finished_run(work: Path, run_root: Path, promote_best: bool) -> dict | None:
    """What `retrain` returned for a finished run directory (complete, and gated when gating is asked), or None.
    Training is seeded, so the same recipe would only make the same models again."""
    manifest_path, results_path = run_root / "run.json", run_root / "results.parquet"
    if not (manifest_path.is_file() and results_path.is_file()):
        return None
    manifest = json.loads(manifest_path.read_text())
    if promote_best and "promotion" not in manifest:  # crashed between registering and gating: run it again
        return None
    run_id = manifest["run_id"]
    report = work / "reports" / run_id / "report.md"
    return {"run_id": run_id, "model_dir": str(run_root), "report": str(report),
            "png": str(report.with_suffix(".png")),
            "promotion": {"promoted": False, "reason": f"nothing new since run {run_id}"} if promote_best else None,
            "results": results_summary(pd.read_parquet(results_path)),
            "feature_tables": dict(manifest["feature_tables"]), "skipped": f"nothing new since run {run_id}"}


def results_summary(results: pd.DataFrame) -> list[dict]:
    cols = ["backbone", "variant", "seed", "valid_auc", "valid_logloss", "test_auc", "test_logloss"]
    return results[cols].round(4).to_dict(orient="records")
