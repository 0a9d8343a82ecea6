"""CTR metrics: AUC and LogLoss (sklearn) and per-user GAUC.

GAUC = impression-weighted mean of per-user AUC, over users whose samples hold both classes (AUC is undefined
otherwise). Per-user AUC uses the rank-sum (Mann-Whitney) form with average ranks for ties, computed for all users
at once with a pandas groupby rank instead of a Python loop over users.

    from models.metrics import ctr_metrics
    ctr_metrics(y_true, y_pred, users)  # {"auc":..., "logloss":..., "gauc":..., "gauc_users":...}
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

EPS = 1e-7


def auc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true = np.asarray(y_true)
    if np.unique(y_true).size < 2:
        return float("nan")
    return float(roc_auc_score(y_true, y_pred))


def logloss(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    p = np.clip(np.asarray(y_pred, dtype=np.float64), EPS, 1 - EPS)
    return float(log_loss(np.asarray(y_true), p, labels=[0, 1]))


def per_user_auc(y_true: np.ndarray, y_pred: np.ndarray, users: np.ndarray) -> pd.DataFrame:
    """One row per user with both classes: user, auc, impressions."""
    df = pd.DataFrame({"u": np.asarray(users), "y": np.asarray(y_true).astype(np.int64),
                       "p": np.asarray(y_pred, dtype=np.float64)})
    df["r"] = df.groupby("u", sort=False)["p"].rank(method="average")
    g = df.groupby("u", sort=False).agg(n=("y", "size"), pos=("y", "sum"))
    g["rank_pos"] = df[df["y"] == 1].groupby("u", sort=False)["r"].sum()
    g["neg"] = g["n"] - g["pos"]
    g = g[(g["pos"] > 0) & (g["neg"] > 0)]
    user_auc = (g["rank_pos"] - g["pos"] * (g["pos"] + 1) / 2) / (g["pos"] * g["neg"])
    return pd.DataFrame({"user": g.index.to_numpy(), "auc": user_auc.to_numpy(dtype=np.float64),
                         "impressions": g["n"].to_numpy()})


def gauc(y_true: np.ndarray, y_pred: np.ndarray, users: np.ndarray) -> float:
    per_user = per_user_auc(y_true, y_pred, users)
    if per_user.empty:
        return float("nan")
    return float(np.average(per_user["auc"], weights=per_user["impressions"]))


def ctr_metrics(y_true: np.ndarray, y_pred: np.ndarray, users: np.ndarray) -> dict[str, float]:
    per_user = per_user_auc(y_true, y_pred, users)
    g = float(np.average(per_user["auc"], weights=per_user["impressions"])) if len(per_user) else float("nan")
    return {"auc": auc(y_true, y_pred), "logloss": logloss(y_true, y_pred), "gauc": g,
            "gauc_users": int(len(per_user))}


def paired_auc_diff(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, n_boot: int = 1000,
                    seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """AUC(a) - AUC(b) on the same rows, with a paired bootstrap interval (rows resampled together for both
    models; draws with a single class are skipped). How a gate on one small slice can say "within noise"."""
    y, a, b = np.asarray(y_true), np.asarray(pred_a, dtype=np.float64), np.asarray(pred_b, dtype=np.float64)
    delta = auc(y, a) - auc(y, b)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if np.unique(y[idx]).size == 2:
            draws.append(roc_auc_score(y[idx], a[idx]) - roc_auc_score(y[idx], b[idx]))
    if not draws:
        return {"delta": delta, "low": float("nan"), "high": float("nan")}
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return {"delta": delta, "low": float(lo), "high": float(hi)}


def json_safe(obj):
    """NaN/inf -> None, recursively (an undefined AUC is null in JSON; the shared writers reject NaN)."""
    if isinstance(obj, float) or isinstance(obj, np.floating):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
