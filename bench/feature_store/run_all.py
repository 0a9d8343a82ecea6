"""Run every feature_store benchmark and print a summary (creates Feast's separate venv when missing).

    /root/.cache/llmfa-probe-venv/bin/python bench/feature_store/run_all.py [--feast-labels 100000,1000000]
        [--feast-timeout 2400] [--skip-feast]

Each measurement runs in its own process so peak RSS (getrusage maxrss) belongs to that measurement alone.
Feast lives in /root/.cache/feast-bench-venv (`pip install feast`), never in the project env. Results are also
written to bench/feature_store/results.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FEAST_VENV = Path(os.environ.get("FEAST_VENV", "/root/.cache/feast-bench-venv"))
FEAST_PY = FEAST_VENV / "bin" / "python"
N_ENTITIES, N_VERSIONS, N_LABELS = 100_000, 5, 1_000_000


def ensure_feast() -> str | None:
    """Create the Feast venv if missing; returns an error string when Feast cannot be installed or imported."""
    if not FEAST_PY.exists():
        print(f"creating {FEAST_VENV} and installing feast (a few minutes)...", flush=True)
        base = "/usr/bin/python3.11" if Path("/usr/bin/python3.11").exists() else "python3"
        r = subprocess.run([base, "-m", "venv", str(FEAST_VENV)], capture_output=True, text=True)
        if r.returncode == 0:
            r = subprocess.run([str(FEAST_PY), "-m", "pip", "install", "-q", "feast"], capture_output=True, text=True)
        if r.returncode != 0:
            return f"feast venv/install failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
    r = subprocess.run([str(FEAST_PY), "-c", "import feast; print(feast.__version__)"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"feast does not import: {r.stderr.strip().splitlines()[-1:]}"
    print(f"feast {r.stdout.strip()} in {FEAST_VENV}", flush=True)
    return None


def run(py: str | Path, script: str, *args, timeout: float | None = None) -> list[dict]:
    cmd = [str(py), str(HERE / script), *map(str, args)]
    print("$", " ".join(cmd), flush=True)
    t = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "PYTHONWARNINGS": "ignore"})
    except subprocess.TimeoutExpired:
        print(f"  timed out after {timeout:.0f} s", flush=True)
        return [{"bench": script, "args": list(args), "error": f"timeout after {timeout:.0f} s"}]
    results = [json.loads(line[7:]) for line in r.stdout.splitlines() if line.startswith("RESULT ")]
    if r.returncode != 0:
        err = (r.stderr.strip().splitlines() or ["?"])[-1]
        print(f"  failed ({r.returncode}): {err}", flush=True)
        results.append({"bench": script, "args": list(args), "error": err})
    for res in results:
        print("  ", json.dumps(res), flush=True)
    print(f"  ({time.perf_counter() - t:.0f} s)", flush=True)
    return results


def summary(results: list[dict]) -> None:
    print("\n== point-in-time join (100k entities x 5 snapshots, 64-d vector) ==")
    pit = [r for r in results if r.get("bench") == "pit"]
    for n in sorted({r["labels"] for r in pit}):
        o = next((r for r in pit if r["labels"] == n and r["impl"] == "ours"), None)
        f = next((r for r in pit if r["labels"] == n and r["impl"] == "feast"), None)
        line = f"labels={n:>9,}  ours {o['seconds']:.2f} s, {o['peak_rss_mb']:.0f} MB" if o else f"labels={n}"
        if f:
            line += (f" | feast {f['seconds']:.1f} s, {f['peak_rss_mb']:.0f} MB | speed-up x{f['seconds'] / o['seconds']:.0f},"
                     f" memory ratio {o['peak_rss_mb'] / f['peak_rss_mb']:.2f}")
        print(line)
    for r in results:
        if "error" in r:
            print(f"not measured: {r['bench']} {r.get('args')}: {r['error']}")
    print("\n== online lookup, 1 thread ==")
    for r in results:
        if r.get("bench") in ("online", "key_index", "online_load"):
            print(json.dumps(r))
    print("\n== write ==")
    for r in results:
        if r.get("bench") == "write":
            print(f"{r['input']}: {r['rows']:,} rows in {r['seconds']:.2f} s = {r['rows_per_s']:,} rows/s, "
                  f"{r['arrow_mb_per_s']} MB/s (Arrow), {r['disk_mb']} MB on disk")
    for r in results:
        if r.get("bench") == "feast_crosscheck":
            print("\n== cross-check vs Feast ==\n" + json.dumps(r))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--feast-labels", default="100000,1000000", help="label counts for Feast's PIT join")
    ap.add_argument("--feast-timeout", type=float, default=2400)
    ap.add_argument("--skip-feast", action="store_true")
    args = ap.parse_args()
    ours = sys.executable
    feast_err = None if args.skip_feast else ensure_feast()
    results: list[dict] = []
    if feast_err:
        print(feast_err)
        results.append({"bench": "feast", "error": feast_err})
    feast_sizes = [int(x) for x in args.feast_labels.split(",") if x]
    sizes = sorted({N_LABELS, *feast_sizes})
    for n in sizes:  # data generation in its own process, so it does not count towards any peak RSS
        subprocess.run([ours, str(HERE / "bench_common.py"), str(N_ENTITIES), str(N_VERSIONS), str(n)], check=True,
                       stdout=subprocess.DEVNULL)
    for n in sizes:
        run(ours, "pit_ours.py", N_ENTITIES, N_VERSIONS, n)  # first run publishes the table
        results += run(ours, "pit_ours.py", N_ENTITIES, N_VERSIONS, n)
    results += run(ours, "online_ours.py", N_ENTITIES, N_VERSIONS, N_LABELS)
    results += run(ours, "write_throughput.py", 1_000_000)
    if not args.skip_feast and not feast_err:
        results += run(ours, "compare_feast.py")
        results += run(FEAST_PY, "online_feast.py", N_ENTITIES, N_VERSIONS, N_LABELS, timeout=args.feast_timeout)
        for n in feast_sizes:
            results += run(FEAST_PY, "pit_feast.py", N_ENTITIES, N_VERSIONS, n, timeout=args.feast_timeout)
    (HERE / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    summary(results)


if __name__ == "__main__":
    main()
