"""Scale benchmark of the data path: ingest, split, prompts and the CTR dataset build at 100k / 1M / 10M rows.

What it measures: for each size of a synthetic log (bench/data/synthetic_log.py: hex/ASIN string ids, Zipf items,
heavy-tailed users, ~2 years) and for real MovieLens-100K as a reference, each step runs the REAL stage function in
a FRESH child process, so its wall time and peak RSS are its own:

    ingest      augment.stages.ingest(cfg)            load_dataset + validate + publish interactions/items/users
    split       augment.stages.split(cfg, versions)   per-user time split -> interaction_splits, user_cutoffs
    prompts     augment.stages.prompts(cfg, versions) KAR item + user prompts
    embeddings  (set-up, not a goal) random 384-d float16 item_knowledge_emb / user_profile_emb tables, published
                with the store API (user rows at the user's cutoff) -- no LLM, no encoder
    dataset     models.dataset_builder.build_ctr_dataset: static joins + point-in-time join of the two 384-d
                vectors + DIN history (variants base + llm, history_len 20, 1 DuckDB thread as in ml100k.yaml)

Seconds are timed inside the child around the stage call (imports excluded); peak GB is the child's peak RSS
(os.wait4 ru_maxrss, the same as its VmHWM). rows/s divides the input interactions by the seconds. The dataset
step is skipped at a size whose estimated peak (label rows x 2 vectors x 384 floats, plus the Arrow copy) exceeds
--max-dataset-gb (default 12): 10M rows (~5M labels) does not fit. A child whose RSS passes --mem-limit-gb
(default 14) is killed (the machine is shared). Generated data is cached in var/bench_scale/data/; generation
time is not measured. Each size gets a fresh workdir var/bench_scale/run-<size>-<ids>/.

Goals printed at the end: ingest + split of 10M rows in <= 60 s and <= 4 GB peak; cost per row from 100k to 10M
close to linear (the ratio of seconds/row at 10M to 100k; 1.0 = linear; PASS at <= 1.5).

    # from the repository root, in the project environment (source .venv/bin/activate):
    python -m bench.data.bench_scale                        # 100k, 1m, 10m (string ids) + ml100k
    python -m bench.data.bench_scale --sizes 100k,1m --int-ids --no-ml100k   # integer ids
    python -m bench.data.bench_scale --profile ingest:1m    # cProfile one step, top 25
    # writes bench/data/results_scale.json and bench/data/scale.png (if matplotlib is installed)

Internal: the parent re-runs this module with --child STEP for each step.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from common.files import atomic_write_text

REPO = Path(__file__).resolve().parents[2]
ROOT = REPO / "var" / "bench_scale"
HERE = Path(__file__).resolve().parent
SIZES = {"100k": 100_000, "1m": 1_000_000, "3m": 3_000_000, "10m": 10_000_000}
STEPS = ("ingest", "split", "prompts", "embeddings", "dataset")
DIM = 384
HISTORY_LEN = 20
GOAL_SECONDS, GOAL_GB, GOAL_LINEAR = 60.0, 4.0, 1.5


# ------------------------------------------------------------------------------------------------ child side

def _vmhwm_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def run_config(size: str, data_dir: str, workdir: Path):
    from configs import ColumnMap, DataConfig, GenericSource, RunConfig, load_config

    if size == "ml100k":
        cfg = load_config(REPO / "configs" / "ml100k.yaml")
        return cfg.model_copy(update={"workdir": str(workdir)})
    d = Path(data_dir)
    data = DataConfig(source="generic", generic=GenericSource(
        interactions=ColumnMap(path=str(d / "interactions.csv"), format="csv"),
        items=ColumnMap(path=str(d / "items.csv"), format="csv")))
    return RunConfig(workdir=str(workdir), data=data)


def _embedding_tables(cfg, v: dict) -> tuple[dict, dict]:
    """Random 384-d float16 vectors for every item (static time) and every user (at the user's cutoff)."""
    import numpy as np
    import pyarrow as pa

    from augment.publishing import STATIC_TIME, store_for
    from feature_store import definitions as defs

    store = store_for(cfg)
    rng = np.random.default_rng(0)
    ts_type = pa.timestamp("us", tz="UTC")

    def table(spec, key: str, keys, ts) -> pa.Table:
        n = len(keys)
        vec = rng.standard_normal((n, DIM), dtype=np.float32).astype(np.float16)
        emb = pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1)), DIM)
        cols = {key: pa.array(keys, pa.int64()), "event_timestamp": ts, "created_timestamp": ts, "emb": emb,
                "encoder": pa.repeat(pa.scalar("bench-random-384"), n), "source_hash": pa.repeat(pa.scalar(""), n)}
        return pa.table({f.name: cols[f.name].cast(f.type) for f in spec.arrow_schema()})

    items = store.read("items", v["items"], columns=["item_id"]).column("item_id").to_numpy()
    cut = store.read("user_cutoffs", v["user_cutoffs"], columns=["user_id", "cutoff", "n_samples"])
    item_ts = pa.array(np.full(len(items), STATIC_TIME.value // 1000, dtype=np.int64)).cast(ts_type)
    user_ts = cut.column("cutoff").cast(ts_type)
    refs = {}
    for spec, key, keys, ts in ((defs.item_knowledge_emb(DIM), "item_id", items, item_ts),
                                (defs.user_profile_emb(DIM), "user_id", cut.column("user_id").to_numpy(), user_ts)):
        ref = store.publish(spec, lambda s=spec, k=key, kk=keys, t=ts: table(s, k, kk, t),
                            recipe={"table": spec.name, "bench": "random", "dim": DIM, "seed": 0, **v})
        refs[spec.name] = ref
    n_labels = int(np.asarray(cut.column("n_samples")).sum())
    return {k: r.version for k, r in refs.items()}, {"rows_out": sum(r.rows for r in refs.values()),
                                                     "labels": n_labels}


def dataset_features():
    from configs.train_config import TrainConfig
    from models.feature_spec import resolve_variants, used_entries

    tc = TrainConfig()
    return used_entries(tc.features, resolve_variants(tc, ["base", "llm"]).values(), sequence=True)


def _relative(path: str) -> str:
    """A path inside the checkout as the results file records it (relative: the file is committed)."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return path


def child(args) -> None:
    """Run one step on the versions in <workdir>/versions.json; print one BENCH_RESULT line."""
    import importlib

    import augment.stages as stages

    for module in ("augment.data.ingest", "augment.text.prompts", "augment.data.split"):  # import time is not part of the step
        importlib.import_module(module)
    from models.dataset_builder import build_ctr_dataset

    workdir = Path(args.workdir)
    cfg = run_config(args.size, args.data, workdir)
    vfile = workdir / "versions.json"
    v = json.loads(vfile.read_text()) if vfile.exists() else {}
    extra: dict = {}

    def work():
        nonlocal extra
        if args.child == "ingest":
            out = stages.ingest(cfg)
            extra = {"rows_out": stages.store_for(cfg).existing("interactions", out["interactions"]).rows}
            return out
        if args.child == "split":
            out = stages.split(cfg, v)
            extra = {"rows_out": stages.store_for(cfg).existing("interaction_splits", out["interaction_splits"]).rows}
            return out
        if args.child == "prompts":
            out = stages.prompts(cfg, v)
            st = stages.store_for(cfg)
            extra = {"rows_out": st.existing("item_prompts", out["item_prompts"]).rows
                     + st.existing("user_prompts", out["user_prompts"]).rows}
            return out
        if args.child == "embeddings":
            out, extra = _embedding_tables(cfg, v)
            return out
        if args.child == "dataset":
            built = build_ctr_dataset(stages.store_for(cfg), v, dataset_features(), threads=1,
                                      history_len=HISTORY_LEN)
            d = built.data
            extra = {"rows_out": len(d.train) + len(d.valid) + len(d.test),
                     "vector_groups": sorted(d.train.vectors)}
            return {}
        raise SystemExit(f"unknown step {args.child}")

    t0 = time.perf_counter()
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        out = prof.runcall(work)
        seconds = time.perf_counter() - t0
        prof.dump_stats(args.profile)
        stats = pstats.Stats(prof, stream=sys.stderr).strip_dirs().sort_stats("tottime")
        stats.print_stats(25)
        pstats.Stats(prof, stream=sys.stderr).strip_dirs().sort_stats("cumulative").print_stats(30)
    else:
        out = work()
        seconds = time.perf_counter() - t0
    vfile.write_text(json.dumps({**v, **out}, indent=1) + "\n")
    print("BENCH_RESULT " + json.dumps({"seconds": seconds, "vmhwm_gb": _vmhwm_gb(), **extra}), flush=True)


# ------------------------------------------------------------------------------------------------ parent side

def _rss_gb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return 0.0


def run_child(step: str, size: str, data: str, workdir: Path, mem_limit_gb: float,
              profile: str | None = None) -> dict:
    cmd = [sys.executable, "-m", "bench.data.bench_scale", "--child", step, "--size", size, "--data", data,
           "--workdir", str(workdir)] + (["--profile", profile] if profile else [])
    env = dict(os.environ)  # the package is installed (editable); the child runs `-m bench...` from the repo root
    log = workdir / f"{step}.log"
    t0 = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        killed, done = threading.Event(), threading.Event()

        def watch():  # never reaps the child (proc.poll would): os.wait4 below must get its rusage
            while not done.is_set():
                if _rss_gb(proc.pid) > mem_limit_gb:
                    killed.set()
                    proc.kill()
                    return
                time.sleep(0.2)

        threading.Thread(target=watch, daemon=True).start()
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        done.set()
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    peak_gb = usage.ru_maxrss / 1024**2  # KiB on Linux
    found = [json.loads(line[len("BENCH_RESULT "):]) for line in stdout.splitlines()
             if line.startswith("BENCH_RESULT ")]
    if proc.returncode != 0 or not found:
        tail = [ln for ln in log.read_text().splitlines() if ln.strip()][-1:] or ["(no output)"]
        why = f"killed at {mem_limit_gb} GB RSS" if killed.is_set() else tail[0][:160]
        return {"status": "error", "error": why, "process_seconds": round(wall, 2), "peak_gb": round(peak_gb, 3)}
    res = found[-1]
    return {"status": "ok", "seconds": round(res.pop("seconds"), 3), "process_seconds": round(wall, 2),
            "peak_gb": round(peak_gb, 3), **res}


def prepare_data(size: str, int_ids: bool) -> tuple[str, int, dict]:
    """(data dir, interaction rows, generator summary); generated once per size and id type."""
    if size == "ml100k":
        return "ml100k", 100_000, {"source": "MovieLens-100K (recbole wheel)"}
    from bench.data.synthetic_log import generate

    rows = SIZES[size]
    out = ROOT / "data" / f"{size}-{'int' if int_ids else 'str'}"
    meta = generate(out, rows, int_ids=int_ids)
    return str(out), rows, meta


def estimate_dataset_gb(labels: int) -> float:
    """Peak of build_ctr_dataset: two (labels x 384) float32 matrices (plus the float16 Arrow copy while they
    are made; splits are slices of them), the DIN history (labels x 20 int64, twice) and ~0.6 GB of frames and
    interpreter. Conservative: 3.0 GB predicted for the 1M-row log, 2.3 GB measured."""
    return labels * (2 * DIM * 4 * 1.3 + HISTORY_LEN * 8 * 2 + 400) / 1e9 + 0.6


def bench_size(size: str, args) -> list[dict]:
    ids = "int" if args.int_ids or size == "ml100k" else "str"
    data, rows, meta = prepare_data(size, args.int_ids)
    workdir = ROOT / f"run-{size}-{ids}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    (ROOT / "cache").mkdir(parents=True, exist_ok=True)
    (workdir / "cache").symlink_to(ROOT / "cache")  # the recbole wheel is fetched once for every run
    print(f"== {size} ({ids} ids, {rows:,} rows): {data}", flush=True)
    out, failed, labels = [], None, None
    for step in STEPS:
        row = {"size": size, "ids": ids, "rows": rows, "step": step}
        if step not in args.steps:
            continue
        if failed:
            out.append({**row, "status": "skipped", "note": f"after {failed} failed"})
            continue
        if step == "dataset" and labels is not None and estimate_dataset_gb(labels) > args.max_dataset_gb:
            out.append({**row, "status": "skipped", "labels": labels,
                        "note": f"est. {estimate_dataset_gb(labels):.1f} GB > {args.max_dataset_gb} GB for "
                                f"{labels:,} labels x 2 x {DIM} floats"})
            print(f"   {step:<10} skipped: {out[-1]['note']}", flush=True)
            continue
        res = run_child(step, size, data, workdir, args.mem_limit_gb)
        row.update(res)
        if res["status"] == "ok":
            row["rows_per_s"] = round(rows / res["seconds"]) if res["seconds"] else None
            labels = res.get("labels", labels)
            print(f"   {step:<10} {res['seconds']:8.2f} s {row['rows_per_s']:>12,} rows/s "
                  f"{res['peak_gb']:6.2f} GB", flush=True)
        else:
            failed = step
            print(f"   {step:<10} FAILED: {res['error']}", flush=True)
        out.append(row)
    if not args.keep:
        shutil.rmtree(workdir / "feature_store", ignore_errors=True)
    if size != "ml100k":
        out.append({"size": size, "ids": ids, "rows": rows, "step": "generate (not measured)",
                    "status": "info", "seconds": meta.get("seconds"), "note": json.dumps(
                        {k: meta[k] for k in ("users_max_rows", "users_median_rows", "items_with_rows",
                                              "top1pct_items_share") if k in meta})})
    return out


def goals(results: list[dict]) -> dict:
    ok = {(r["size"], r["step"]): r for r in results if r.get("status") == "ok"}
    g: dict = {}

    def pair(size: str) -> tuple[float, float] | None:
        a, b = ok.get((size, "ingest")), ok.get((size, "split"))
        return (a["seconds"] + b["seconds"], max(a["peak_gb"], b["peak_gb"])) if a and b else None

    ten = pair("10m")
    g["ingest_split_10m"] = ({"seconds": round(ten[0], 2), "peak_gb": round(ten[1], 2),
                              "pass": ten[0] <= GOAL_SECONDS and ten[1] <= GOAL_GB} if ten
                             else {"pass": None, "note": "10M ingest+split not measured"})
    small = pair("100k")
    ratios = {}
    for big in ("10m", "3m", "1m"):
        large = pair(big)
        if small and large:
            ratios[f"{big}_vs_100k"] = round((large[0] / SIZES[big]) / (small[0] / SIZES["100k"]), 3)
    for step in ("ingest", "split", "prompts", "dataset"):
        for big in ("10m", "1m"):
            a, b = ok.get(("100k", step)), ok.get((big, step))
            if a and b:
                ratios[f"{step}_{big}_vs_100k"] = round((b["seconds"] / SIZES[big]) / (a["seconds"] / SIZES["100k"]), 3)
    g["per_row_cost_ratio"] = ratios
    key = "10m_vs_100k"
    g["linear_10m"] = ({"ratio": ratios[key], "pass": ratios[key] <= GOAL_LINEAR} if key in ratios
                       else {"pass": None, "note": "needs ingest+split at 100k and 10M"})
    return g


def print_table(results: list[dict], g: dict) -> None:
    print(f"\n{'size':<7}| {'ids':<4}| {'step':<24}| {'seconds':>9} | {'rows/s':>12} | {'peak GB':>7} | note")
    print("-" * 96)
    for r in results:
        secs = f"{r['seconds']:9.2f}" if isinstance(r.get("seconds"), (int, float)) else f"{'-':>9}"
        rps = f"{r['rows_per_s']:>12,}" if r.get("rows_per_s") else f"{'-':>12}"
        gb = f"{r['peak_gb']:7.2f}" if r.get("status") in ("ok", "error") else f"{'-':>7}"
        note = r.get("note") or r.get("error") or ""
        if r.get("status") not in ("ok", "info"):
            note = f"{r['status'].upper()}: {note}"
        print(f"{r['size']:<7}| {r['ids']:<4}| {r['step']:<24}| {secs} | {rps} | {gb} | {note}")
    t = g["ingest_split_10m"]
    verdict = {True: "PASS", False: "FAIL", None: "N/A"}
    print(f"\ngoal ingest+split 10M <= {GOAL_SECONDS:.0f} s and <= {GOAL_GB:.0f} GB: {verdict[t['pass']]}"
          + (f" ({t['seconds']} s, {t['peak_gb']} GB)" if "seconds" in t else f" ({t['note']})"))
    lin = g["linear_10m"]
    print(f"goal per-row cost 10M/100k (ingest+split) <= {GOAL_LINEAR}: {verdict[lin['pass']]}"
          + (f" (ratio {lin['ratio']})" if "ratio" in lin else f" ({lin['note']})"))
    print("per-row cost ratios (1.0 = linear): " + json.dumps(g["per_row_cost_ratio"]))


def plot(results: list[dict], path: Path) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot"
    ok = [r for r in results if r.get("status") == "ok" and r["size"] in SIZES]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for step in STEPS:
        pts = sorted((r["rows"], r["seconds"], r["peak_gb"]) for r in ok if r["step"] == step)
        if not pts:
            continue
        xs = [p[0] for p in pts]
        ax1.plot(xs, [p[1] for p in pts], "o-", label=step)
        ax2.plot(xs, [p[2] for p in pts], "o-", label=step)
    if any(r["size"] == "10m" for r in ok):
        ax1.axhline(GOAL_SECONDS, ls="--", c="grey", lw=0.8)
        ax2.axhline(GOAL_GB, ls="--", c="grey", lw=0.8)
    ids = sorted({r["ids"] for r in ok})
    for ax, lab in ((ax1, "seconds"), (ax2, "peak RSS (GB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("interactions")
        ax.set_ylabel(lab)
        ax.grid(True, which="both", lw=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"data path at scale ({'/'.join(ids)} ids; one fresh process per step)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def _git_head() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True).stdout.strip()
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100k,1m,10m", help=f"comma list of {sorted(SIZES)}")
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--int-ids", action="store_true", help="integer ids instead of hex/ASIN strings")
    ap.add_argument("--no-ml100k", action="store_true", help="skip the MovieLens-100K reference")
    ap.add_argument("--max-dataset-gb", type=float, default=12.0)
    ap.add_argument("--mem-limit-gb", type=float, default=14.0)
    ap.add_argument("--keep", action="store_true", help="keep each run's feature store")
    ap.add_argument("--out", default=str(HERE / "results_scale.json"))
    ap.add_argument("--png", default=str(HERE / "scale.png"))
    ap.add_argument("--profile", metavar="STEP:SIZE", help="cProfile one step (earlier steps run unprofiled)")
    # child mode
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--size", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    if args.profile:
        return profile(args)
    args.steps = args.steps.split(",")
    sizes = [s for s in args.sizes.split(",") if s]
    bad = [s for s in sizes if s not in SIZES]
    if bad:
        raise SystemExit(f"unknown size(s) {bad}; known {sorted(SIZES)}")
    results: list[dict] = []
    for size in ([] if args.no_ml100k else ["ml100k"]) + sizes:
        results.extend(bench_size(size, args))
    g = goals(results)
    print_table(results, g)
    png = plot(results, Path(args.png))
    print(png if not png.endswith(".png") else f"plot: {png}")
    report = {"what": "bench/data/bench_scale.py", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "git": _git_head(), "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "int_ids": args.int_ids, "settings": {"dim": DIM, "history_len": HISTORY_LEN, "dataset_threads": 1,
                                                    "max_dataset_gb": args.max_dataset_gb},
              "results": results, "goals": g, "plot": _relative(png)}
    atomic_write_text(Path(args.out), json.dumps(report, indent=1) + "\n")
    print(f"results: {args.out}")


def profile(args) -> None:
    step, _, size = args.profile.partition(":")
    if step not in STEPS or size not in {*SIZES, "ml100k"}:
        raise SystemExit(f"--profile STEP:SIZE with STEP in {STEPS} and SIZE in {sorted(SIZES)} or ml100k")
    data, rows, _ = prepare_data(size, args.int_ids)
    workdir = ROOT / f"profile-{size}-{'int' if args.int_ids else 'str'}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    (ROOT / "cache").mkdir(parents=True, exist_ok=True)
    (workdir / "cache").symlink_to(ROOT / "cache")
    for s in STEPS[: STEPS.index(step)]:
        res = run_child(s, size, data, workdir, args.mem_limit_gb)
        if res["status"] != "ok":
            raise SystemExit(f"{s} failed: {res['error']}")
    out = workdir / f"{step}.pstats"
    res = run_child(step, size, data, workdir, args.mem_limit_gb, profile=str(out))
    print(json.dumps(res))
    print((workdir / f"{step}.log").read_text())


if __name__ == "__main__":
    main()
