"""Serving: score candidate items for a user from the promoted model and its pinned feature tables, no LLM.

    from models.serving import Scorer
    scorer = Scorer.from_registry("var/ml100k", "ctr")
    probabilities = scorer.score(user_id=42, item_ids=[1, 2, 3])

    python -m models.serving --workdir var/ml100k --port 8000     # HTTP: /score, /healthz, /metrics

Only numpy, pandas, pyarrow, torch/LightGBM and the models/feature_store packages are imported on this path:
never vllm, transformers, sentence-transformers or augment's generation code (tests/serving checks sys.modules).
"""
from models.serving.scorer import ColdStartCounts, Scorer, ScoreResult

__all__ = ["ColdStartCounts", "ScoreResult", "Scorer"]
