"""Output tokens per entity, and how answers end, per prompt template and token budget: the main job's KAR
templates (v1, cut at max_tokens) against the bounded ones (v2 + a stop string), on the same sample of ML-100K
items and users, through one vLLM engine in one run, with the stage's own output validation.

    python bench/generation/bench_prompt_tokens.py [--sample 128] [--config configs/ml100k.yaml]
    # prints a table, writes bench/generation/results_prompt_tokens.json
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# arm -> (item template, user template, item budget, user budget, stop strings)
ARMS = {
    "v1 (main job today)": ("item_knowledge_v1", "user_preference_v1", 80, 96, ()),
    "v2 + stop, 64": ("item_knowledge_v2", "user_preference_v2", 64, 64, ("\n\n",)),
    "v2 + stop, 48": ("item_knowledge_v2", "user_preference_v2", 48, 48, ("\n\n",)),
}


def main(argv: list[str] | None = None) -> int:
    from augment import stages
    from augment.llm.backend import ChatRequest
    from augment.llm.engine import chat
    from augment.text.output_validation import ACCEPTED, check_output
    from configs import load_config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO / "configs" / "ml100k.yaml"))
    p.add_argument("--sample", type=int, default=128, help="items and users each")
    p.add_argument("--out", default=str(REPO / "bench" / "generation" / "results_prompt_tokens.json"))
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-tokens-"))
    base = {"workdir": str(work), "stream": None}
    cfg = load_config(args.config, base)
    versions = stages.ingest(cfg)
    versions.update(stages.split(cfg, versions))
    rows, samples = [], {}
    for arm, (item_t, user_t, item_budget, user_budget, stop) in ARMS.items():
        arm_cfg = load_config(args.config, {**base, "prompts.item_template": item_t, "prompts.user_template": user_t})
        out = stages.prompts(arm_cfg, versions)
        store = stages.store_for(arm_cfg)
        for kind, table, key, budget in (("item", "item_prompts", "item_id", item_budget),
                                         ("user", "user_prompts", "user_id", user_budget)):
            frame = store.read_pandas(table, out[table]).sort_values(key)
            frame = frame.iloc[np.linspace(0, len(frame) - 1, args.sample).astype(int)]  # the same ids every arm
            requests = [ChatRequest(key=str(k), conversation=json.loads(m), max_tokens=budget, temperature=0.0,
                                    top_p=1.0, repetition_penalty=arm_cfg.generation.sampling.repetition_penalty,
                                    seed=0, stop=stop)
                        for k, m in zip(frame[key], frame["messages"])]
            started = time.perf_counter()
            results = chat(arm_cfg.generation.engine, requests)
            seconds = time.perf_counter() - started
            verdicts = [check_output(r.text, r.finish_reason, arm_cfg.generation.validation) for r in results]
            tokens = np.array([r.output_tokens for r in results])
            rows.append({"arm": arm, "kind": kind, "max_tokens": budget, "stop": list(stop),
                         "prompts": len(results), "output_tokens_mean": float(tokens.mean()),
                         "output_tokens_p95": float(np.percentile(tokens, 95)),
                         "cut_at_budget": float(np.mean([r.finish_reason == "length" for r in results])),
                         "accepted": float(np.mean([v.flag in ACCEPTED for v in verdicts])),
                         "seconds": round(seconds, 1), "output_tok_per_s": float(tokens.sum() / seconds)})
            samples[f"{arm} / {kind}"] = [v.text for v in verdicts[:3]]
            print(json.dumps(rows[-1]), flush=True)
    head = f"{'arm':22} {'kind':5} {'budget':>6} {'tokens/entity':>13} {'p95':>5} {'cut':>5} {'accepted':>8} {'s':>6}"
    print("\n" + head)
    for r in rows:
        print(f"{r['arm']:22} {r['kind']:5} {r['max_tokens']:>6} {r['output_tokens_mean']:>13.1f} "
              f"{r['output_tokens_p95']:>5.0f} {r['cut_at_budget']:>5.0%} {r['accepted']:>8.0%} {r['seconds']:>6.1f}")
    for name, texts in samples.items():
        print(f"\n## {name}\n" + "\n".join(f"- {t}" for t in texts))
    Path(args.out).write_text(json.dumps({"sample": args.sample, "config": args.config, "rows": rows,
                                          "samples": samples}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
