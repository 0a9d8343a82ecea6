"""Model registry: one directory per trained model, a champion pointer, and the promotion gate.

Layout (root = <workdir>/registry):

    <root>/<name>/<run_id>/<backbone>/<variant>/seed=<s>/   model.pt | model.txt + pca.npz, feature_map.json,
                                                            metrics.json, manifest.json
    <root>/<name>/<run_id>/run.json                         the run: results, feature tables, gate decision
    <root>/<name>/champion.json                             the promoted model (atomically replaced)
    <root>/<name>/decisions.jsonl                           every gate decision, promoted or not

Weights are state_dicts / LightGBM text, never pickles. A manifest pins the exact feature-table versions the
model read, its config and metrics. The gate scores champion and challenger on the SAME valid rows and promotes
only if the challenger's valid AUC beats the champion's by more than `margin`; a failed gate keeps the champion.

    from models.registry import load_champion, load_model, promote
    model, manifest = load_champion("var/ml100k", "ctr")
    p = model.predict(frame, {"item_knowledge_emb": X, ...}, history=H, history_len=L)
    python -m models registry ls --root var/ml100k [--name ctr]
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from common.files import atomic_write_json
from configs.train_config import MODEL_NAME
from models.backbones import model_class
from models.ctr_inputs import CtrSplit
from models.metrics import json_safe

log = logging.getLogger(__name__)
CHAMPION, DECISIONS, MANIFEST = "champion.json", "decisions.jsonl", "manifest.json"


def model_feature_store(model_dir: str | Path, workdir: str | Path, override=None):
    """Where a registered model's pinned feature versions are read: `override` (a URI, path or FeatureStore:
    serving's --feature-store), else the object store the retrain recorded in the model's manifest
    (`feature_store.uri`, s3:// or gs://...), else <workdir>/feature_store: a local store travels with its
    workdir, so a copied workdir serves from its own copy."""
    from feature_store import FeatureStore
    from feature_store.locations import is_object_uri, open_store

    if isinstance(override, FeatureStore):
        return override
    if override is not None:
        return open_store(override)
    try:
        recorded = read_model_manifest(model_dir).get("feature_store") or {}
    except (OSError, ValueError):
        recorded = {}  # load_model reports a missing or broken manifest itself
    if recorded.get("uri") and is_object_uri(recorded["uri"]):
        return open_store(recorded["uri"], s3=recorded.get("s3"))
    return open_store(Path(workdir) / "feature_store")


def registry_root(workdir_or_root: str | Path) -> Path:
    """Accept a workdir (holding registry/) or the registry root itself."""
    path = Path(workdir_or_root)
    return path / "registry" if (path / "registry").is_dir() or (path / "feature_store").is_dir() else path


class ScoringModel:
    """A registered model that scores a pandas frame + vector groups (+ item history for sequence models)."""

    def __init__(self, inner, manifest: dict, model_dir: Path):
        self.inner, self.manifest, self.model_dir = inner, manifest, Path(model_dir)

    @property
    def required_groups(self) -> list[str]:
        """Vector groups `predict` needs, each (len(frame), d) float32 and row-aligned with the frame."""
        return list(self.inner.required_groups)

    @property
    def feature_map(self) -> dict:
        return self.inner.feature_map

    @property
    def frame_columns(self) -> list[str]:
        """Columns `predict` reads from the frame (the model columns of the feature-spec entries it uses)."""
        fm = self.inner.feature_map
        return [*fm["categorical"], *fm["numeric"]]

    @property
    def needs_history(self) -> bool:
        return bool(self.inner.feature_map.get("history"))

    @property
    def feature_tables(self) -> dict[str, str]:
        return dict(self.manifest.get("feature_tables", {}))

    def predict(self, frame: pd.DataFrame, vectors: Mapping[str, np.ndarray] | None = None,
                history: np.ndarray | None = None, history_len: np.ndarray | None = None) -> np.ndarray:
        """Click probabilities for each row. `frame` holds the categorical/numeric columns in the feature map;
        unknown ids/values are fine (they map to the 'unseen' slot)."""
        vectors = dict(vectors or {})
        absent = [c for c in self.frame_columns if c not in frame.columns]
        if absent:
            raise ValueError(f"{self.model_dir}: predict needs frame column(s) {absent}")
        missing = [g for g in self.required_groups if g not in vectors]
        if missing:
            raise ValueError(f"{self.model_dir}: predict needs vector group(s) {missing}")
        if self.needs_history and (history is None or history_len is None):
            raise ValueError(f"{self.model_dir}: predict needs history and history_len (a sequence model)")
        return self.inner.predict(CtrSplit(frame.reset_index(drop=True), vectors, history, history_len))

    def predict_split(self, split: CtrSplit) -> np.ndarray:
        return self.inner.predict(split)


def load_model(model_dir: str | Path) -> ScoringModel:
    """Load a saved model (any backbone) with its manifest, from files only: no pickle."""
    model_dir = Path(model_dir)
    fmap_path = model_dir / "feature_map.json"
    if not fmap_path.is_file():
        raise FileNotFoundError(f"{model_dir}: not a saved model (no feature_map.json)")
    fmap = json.loads(fmap_path.read_text())
    if fmap.get("format") != 2:
        raise ValueError(f"{fmap_path}: feature-map format {fmap.get('format', 1)}, this code reads format 2 "
                         "(retrain the model)")
    inner = model_class(fmap["backbone"]).load(model_dir)
    return ScoringModel(inner, read_model_manifest(model_dir), model_dir)


def champion_info(root: str | Path, name: str) -> dict | None:
    path = registry_root(root) / name / CHAMPION
    return json.loads(path.read_text()) if path.is_file() else None


def load_champion(root: str | Path, name: str = MODEL_NAME) -> tuple[ScoringModel, dict]:
    """The promoted model of `name` and its manifest (feature tables to pin for serving, metrics, config)."""
    info = champion_info(root, name)
    if info is None:
        raise FileNotFoundError(f"{registry_root(root) / name / CHAMPION}: no champion promoted for {name!r}")
    model = load_model(registry_root(root) / name / info["model_path"])
    return model, model.manifest


def read_model_manifest(model_dir: str | Path) -> dict:
    """A registered model's manifest ({} when it has none), without loading the model: its pinned feature_tables,
    feature store, metrics and config."""
    path = Path(model_dir) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


def write_model_manifest(model_dir: Path, manifest: dict) -> Path:
    return atomic_write_json(Path(model_dir) / MANIFEST, json_safe(manifest))


def _append_decision(path: Path, decision: dict) -> None:
    # one line per decision, written with a single O_APPEND write so concurrent runs cannot interleave a line
    line = (json.dumps(json_safe(decision), default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def promote(root: str | Path, name: str, challenger_dir: str | Path,
            valid_auc: Callable[[ScoringModel], float], margin: float, force: bool = False,
            on: str = "valid", rule: str = "margin",
            paired: Callable[[ScoringModel, ScoringModel], Mapping[str, float]] | None = None) -> dict:
    """Gate: promote `challenger_dir` by `rule` (configs/train_config.py promotion_rule): "margin" iff
    valid_auc(challenger) - valid_auc(champion) > margin; "superiority" / "non_inferiority" iff the low end of
    the paired interval, `paired(challenger, champion)` -> {delta, low, high} on the same rows (called after both
    are scored), is above margin / above -margin.

    `valid_auc` scores a model on this run's gate rows, `on` names them ("valid"; "test" in a daily run: the
    newest interval, which neither model trained or selected on), so both numbers come from the same rows.
    The AUCs keep the key `valid_auc` for older readers; `gate_rows` says which rows they are. Returns (and
    logs, and appends to decisions.jsonl) the decision.
    """
    base = registry_root(root) / name
    challenger_dir = Path(challenger_dir).resolve()
    rel = os.path.relpath(challenger_dir, base.resolve())
    if rel.startswith(".."):
        raise ValueError(f"{challenger_dir}: not inside registry {base}")
    challenger = load_model(challenger_dir)
    c_auc = float(valid_auc(challenger))
    info = champion_info(root, name)
    decision: dict = {"name": name, "decided_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                      "margin": margin, "gate_rows": on, "challenger": {"model_path": rel, "valid_auc": c_auc,
                                                        **_describe(challenger)}}
    if info is None:
        decision.update(promoted=True, reason="no champion yet")
    elif info["model_path"] == rel:
        decision.update(promoted=False, reason="challenger is already the champion",
                        champion={**info, "valid_auc_now": c_auc})
    else:
        try:
            champ = load_model(base / info["model_path"])
            h_auc = float(valid_auc(champ))
        except Exception as exc:  # noqa: BLE001 - an unscorable champion is a reason, not a crash
            h_auc, champ_error = float("nan"), f"{type(exc).__name__}: {exc}"
        else:
            champ_error = None
        decision["champion"] = {**{k: info.get(k) for k in ("model_path", "backbone", "variant", "seed")},
                                "valid_auc": h_auc}
        if champ_error:
            decision.update(promoted=bool(force), reason=f"champion could not be scored ({champ_error})"
                            + ("; forced" if force else "; kept (use force to replace)"))
        else:
            delta = c_auc - h_auc
            decision["delta"] = delta
            ok, why = _rule(rule, delta, margin, paired(challenger, champ) if paired and rule != "margin" else None,
                            decision)
            decision.update(promoted=ok or bool(force),
                            reason=f"{on} AUC {c_auc:.4f} vs champion {h_auc:.4f}: {why}"
                            + ("; forced" if force and not ok else ""))
    if decision["promoted"]:
        atomic_write_json(base / CHAMPION, {"model_path": rel, "valid_auc": c_auc, "promoted_at": decision["decided_at"],
                                     **_describe(challenger)})
    _append_decision(base / DECISIONS, decision)
    log.info("promotion gate %s: %s (%s)", name, "PROMOTED" if decision["promoted"] else "kept champion",
             decision["reason"])
    return decision


RULES = ("margin", "superiority", "non_inferiority")


def _rule(rule: str, delta: float, margin: float, interval: Mapping[str, float] | None,
          decision: dict) -> tuple[bool, str]:
    """(promote?, the sentence the decision records) under `rule`."""
    decision["rule"] = rule
    if rule == "margin":
        ok = delta > margin
        return ok, f"{delta:+.4f} {'>' if ok else '<='} margin {margin:g} (rule: margin)"
    if rule not in RULES:
        raise ValueError(f"promotion rule {rule!r}: expected one of {list(RULES)}")
    if interval is None:
        raise ValueError(f"promotion rule {rule!r} needs the paired interval of the two models' AUCs")
    low, high = float(interval["low"]), float(interval["high"])
    decision.update(delta_low=low, delta_high=high)
    bar = margin if rule == "superiority" else -margin
    ok = low == low and low > bar  # a nan interval (one class only) promotes nothing
    return ok, (f"{delta:+.4f} [95% {low:+.4f}, {high:+.4f}], low end {'>' if ok else '<='} {bar:+g} "
                f"(rule: {rule.replace('_', '-')}, margin {margin:g})")


def _describe(model: ScoringModel) -> dict:
    m = model.manifest
    return {k: m.get(k) for k in ("run_id", "backbone", "variant", "seed")}


def list_models(root: str | Path, name: str | None = None) -> pd.DataFrame:
    """One row per registered model: name, run, backbone, variant, seed, valid/test AUC, champion flag."""
    reg = registry_root(root)
    rows = []
    for name_dir in sorted(p for p in reg.glob("*") if p.is_dir() and (name is None or p.name == name)):
        champ = (champion_info(reg, name_dir.name) or {}).get("model_path")
        for manifest_path in sorted(name_dir.glob(f"*/*/*/seed=*/{MANIFEST}")):
            m = json.loads(manifest_path.read_text())
            rel = os.path.relpath(manifest_path.parent, name_dir)
            metrics = m.get("metrics", {})
            rows.append({"name": name_dir.name, "run_id": m.get("run_id"), "backbone": m.get("backbone"),
                         "variant": m.get("variant"), "seed": m.get("seed"),
                         "valid_auc": metrics.get("valid_auc"), "test_auc": metrics.get("test_auc"),
                         "champion": rel == champ, "model_path": rel})
    return pd.DataFrame(rows, columns=["name", "run_id", "backbone", "variant", "seed", "valid_auc", "test_auc",
                                       "champion", "model_path"])
