"""A seeded synthetic interaction log shaped like a real e-commerce one, for scale tests of ingest and later stages.

Writes two CSV files into a directory, in the layout a generic source reads (configs/run_config.py GenericSource):

    interactions.csv   user_id,item_id,rating,timestamp      (timestamp: epoch seconds; ratings: integers 1..5)
    items.csv          item_id,title,genres                  (title "Product <word> <word> (2015)", genres "A|B")

Shape (what makes it "like a real log"):
- ids are strings: users are 32-hex strings (md5-hex look), items ASIN-like "B0" + 8 uppercase alphanumerics;
  ``int_ids=True`` writes integers 1..N instead (today's ingest accepts only integer ids);
- item popularity is Zipf (rank^-``zipf_a``, a ~1.05): a few items take most interactions, many get none;
- user activity is heavy-tailed (1 + a multinomial split by log-normal weights, sigma ``user_sigma`` 1.2): the
  median user has a handful of rows, the busiest 50-100x the mean; every user has at least one interaction;
- each user is active in a window of their own inside ~2 years; (user, item, timestamp) is unique;
- ratings are integers 1..5, skewed high like real ratings, shifted per item (some items are better).

Everything is vectorised (numpy + pyarrow; no Python loop over rows or entities) and streamed to CSV in chunks,
so 10M rows take well under a minute and ~1.5 GB. Same arguments + seed -> the same bytes.

    python -m bench.data.synthetic_log OUT_DIR --rows 1000000 [--users N] [--items N] [--seed 0] [--int-ids]
    from bench.data.synthetic_log import generate; generate("var/x", 1_000_000, 100_000, 20_000)
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

T_START = 1_420_070_400  # 2015-01-01T00:00:00Z
SPAN = 2 * 365 * 86_400  # ~2 years of activity
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_ALNUM = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
WORDS = ("Acme Active Air Alpine Amber Apex Arc Atlas Aura Basic Bay Bold Bright Brisk Cedar Chef Civic Classic Clear "
         "Cloud Coast Comet Comfort Core Craft Crest Crystal Daily Delta Drift Dune Echo Edge Elite Ember Epic Essential "
         "Falcon Field Flex Flow Forest Fresh Frost Fusion Galaxy Garden Glide Globe Gold Grand Harbor Haven Horizon "
         "Icon Iron Jade Jet Keystone Kinetic Lake Legacy Lime Linen Lotus Lunar Maple Marine Meadow Metro Mint Mode "
         "Nova Oak Ocean Omega Onyx Orbit Pacific Peak Pearl Pilot Pine Pixel Polar Prime Pulse Quest Radiant Ranger "
         "Ridge River Rock Royal Sage Scout Sierra Silver Sky Solar Sonic Spark Spring Star Stone Storm Summit Sun "
         "Swift Terra Titan Trail True Ultra Urban Vector Velvet Vista Wave Wild Willow Wind Zen Zenith").split()
GENRES = ("Electronics Books Home Kitchen Toys Sports Beauty Clothing Garden Automotive Music Movies Health Grocery "
          "Office Pet Baby Tools Jewelry Software").split()
RATING_P = np.array([0.06, 0.08, 0.16, 0.30, 0.40])  # a typical 1..5 star distribution (skewed high)


def scaled_counts(rows: int) -> tuple[int, int]:
    """(users, items) for a log of ``rows`` interactions: rows/10 users, rows/50 items (10M -> 1M, 200k)."""
    return max(10, rows // 10), max(10, rows // 50)


def _string_array(codes: np.ndarray) -> pa.Array:
    """(n, w) uint8 ASCII codes -> a pyarrow string array of n strings of width w, without a Python loop."""
    n, w = codes.shape
    offsets = (np.arange(n + 1, dtype=np.int64) * w).astype(np.int32 if n * w < 2**31 else np.int64)
    data = np.ascontiguousarray(codes).reshape(-1)
    typ = pa.string() if offsets.dtype == np.int32 else pa.large_string()
    return pa.Array.from_buffers(typ, n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def hex_ids(n: int, rng: np.random.Generator) -> pa.Array:
    """n distinct 32-hex strings (128 random bits each, formatted like md5 hex digests)."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    codes = np.empty((n, 32), dtype=np.uint8)
    codes[:, 0::2], codes[:, 1::2] = _HEX[raw >> 4], _HEX[raw & 15]
    ids = _string_array(codes)
    if pc.count_distinct(ids).as_py() != n:  # 2^-128 odds per pair; checked anyway
        raise RuntimeError("hex id collision; use another seed")
    return ids


def asin_ids(n: int, rng: np.random.Generator) -> pa.Array:
    """n distinct ASIN-like ids: "B0" + 8 characters of [0-9A-Z]."""
    space = 36**8
    vals = np.unique(rng.integers(0, space, size=int(n * 1.05) + 16, dtype=np.int64))
    while len(vals) < n:  # practically never
        vals = np.unique(np.concatenate([vals, rng.integers(0, space, size=n, dtype=np.int64)]))
    vals = rng.permutation(vals)[:n]
    codes = np.empty((n, 10), dtype=np.uint8)
    codes[:, 0], codes[:, 1] = ord("B"), ord("0")
    for pos in range(9, 1, -1):  # base-36 digits, least significant last
        vals, digit = np.divmod(vals, 36)
        codes[:, pos] = _ALNUM[digit]
    return _string_array(codes)


def _words(idx: np.ndarray, vocab: tuple[str, ...]) -> pa.Array:
    return pa.array(vocab).take(pa.array(idx))


def item_table(n_items: int, rng: np.random.Generator, ids: pa.Array) -> pa.Table:
    w1, w2 = (_words(rng.integers(0, len(WORDS), n_items), WORDS) for _ in range(2))
    year = pa.array(rng.integers(1995, 2017, n_items)).cast(pa.string())
    year = pc.binary_join_element_wise("(", year, ")", "")
    title = pc.binary_join_element_wise("Product", w1, w2, year, " ")
    g = [_words(rng.integers(0, len(GENRES), n_items), GENRES) for _ in range(3)]
    k = rng.choice([1, 2, 3], size=n_items, p=[0.35, 0.45, 0.20])
    g2 = pc.binary_join_element_wise(g[0], g[1], "|")
    g3 = pc.binary_join_element_wise(g2, g[2], "|")
    genres = pc.if_else(pa.array(k == 1), g[0], pc.if_else(pa.array(k == 2), g2, g3))
    # A repeated genre ("Books|Books") is legal input: ingest drops duplicates within an item.
    return pa.table({"item_id": ids, "title": title, "genres": genres})


def interaction_arrays(rows: int, n_users: int, n_items: int, rng: np.random.Generator,
                       zipf_a: float = 1.05, user_sigma: float = 1.2) -> dict[str, np.ndarray]:
    """user index, item index, rating, timestamp per row, sorted by timestamp (a log is written in time order)."""
    if rows < n_users:
        raise ValueError(f"rows ({rows}) must be >= users ({n_users}): every user has an interaction")
    # Heavy-tailed activity: 1 + multinomial split of the rest by log-normal weights.
    w = rng.lognormal(0.0, user_sigma, n_users)
    counts = 1 + rng.multinomial(rows - n_users, w / w.sum())
    user = np.repeat(np.arange(n_users, dtype=np.int32), counts)
    # Zipf popularity over a random ranking of the items.
    p = np.arange(1, n_items + 1, dtype=np.float64) ** -zipf_a
    rank_to_item = rng.permutation(n_items).astype(np.int32)
    item = rank_to_item[rng.choice(n_items, size=rows, p=p / p.sum())]
    # Each user is active in a window of their own: start anywhere in the span, length up to the rest of it.
    start = rng.integers(0, SPAN, n_users)
    length = np.minimum(rng.exponential(SPAN / 4, n_users), SPAN - start).astype(np.int64) + 1
    ts = T_START + start[user] + (rng.random(rows) * length[user]).astype(np.int64)
    # Ratings: a per-item shift of the typical 1..5 distribution.
    base = rng.choice(5, size=rows, p=RATING_P)
    shift = rng.choice([-1, 0, 0, 0, 1], size=n_items)[item]
    rating = np.clip(base + shift * (rng.random(rows) < 0.3), 0, 4).astype(np.int8) + 1
    ts = _unique_times(user, item, ts)
    order = np.argsort(ts, kind="stable")
    return {"user": user[order], "item": item[order], "rating": rating[order], "timestamp": ts[order]}


def _unique_times(user: np.ndarray, item: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Shift timestamps by +1 s until (user, item, timestamp) is unique (canonical interactions require it)."""
    ts = ts.copy()
    for _ in range(100):
        order = np.lexsort((ts, item, user))
        u, i, t = user[order], item[order], ts[order]
        dup = np.flatnonzero((u[1:] == u[:-1]) & (i[1:] == i[:-1]) & (t[1:] == t[:-1])) + 1
        if not len(dup):
            return ts
        ts[order[dup]] += 1
    raise RuntimeError("could not make (user, item, timestamp) unique")


def generate(out_dir: str | Path, rows: int, n_users: int | None = None, n_items: int | None = None,
             seed: int = 0, int_ids: bool = False, chunk_rows: int = 1_000_000) -> dict:
    """Write interactions.csv and items.csv into ``out_dir``; returns a summary (also saved as meta.json).

    Skips the work when ``out_dir/meta.json`` records the same arguments."""
    users_def, items_def = scaled_counts(rows)
    n_users, n_items = n_users or users_def, n_items or items_def
    out = Path(out_dir)
    args = {"rows": rows, "users": n_users, "items": n_items, "seed": seed, "int_ids": int_ids, "version": 2}
    meta_path = out / "meta.json"
    if meta_path.exists() and json.loads(meta_path.read_text()).get("args") == args:
        return json.loads(meta_path.read_text())
    out.mkdir(parents=True, exist_ok=True)
    meta_path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    if int_ids:
        user_ids = pa.array(np.arange(1, n_users + 1, dtype=np.int64))
        item_ids = pa.array(np.arange(1, n_items + 1, dtype=np.int64))
    else:
        user_ids, item_ids = hex_ids(n_users, rng), asin_ids(n_items, rng)
    pacsv.write_csv(item_table(n_items, rng, item_ids), out / "items.csv")
    a = interaction_arrays(rows, n_users, n_items, rng)
    opts = pacsv.WriteOptions(include_header=True, quoting_style="needed")
    schema = pa.schema([("user_id", user_ids.type), ("item_id", item_ids.type), ("rating", pa.int8()),
                        ("timestamp", pa.int64())])
    with pacsv.CSVWriter(out / "interactions.csv", schema, write_options=opts) as writer:
        for lo in range(0, rows, chunk_rows):
            sl = slice(lo, min(rows, lo + chunk_rows))
            writer.write_table(pa.table({
                "user_id": user_ids.take(pa.array(a["user"][sl])),
                "item_id": item_ids.take(pa.array(a["item"][sl])),
                "rating": pa.array(a["rating"][sl]),
                "timestamp": pa.array(a["timestamp"][sl]),
            }, schema=schema))
    per_user = np.bincount(a["user"], minlength=n_users)
    per_item = np.bincount(a["item"], minlength=n_items)
    top = np.sort(per_item)[::-1]
    meta = {"args": args, "seconds": round(time.perf_counter() - t0, 2),
            "files": {"interactions": str(out / "interactions.csv"), "items": str(out / "items.csv")},
            "bytes": {"interactions": (out / "interactions.csv").stat().st_size,
                      "items": (out / "items.csv").stat().st_size},
            "users_max_rows": int(per_user.max()), "users_median_rows": float(np.median(per_user)),
            "items_with_rows": int((per_item > 0).sum()),
            "top1pct_items_share": round(float(top[: max(1, n_items // 100)].sum() / rows), 3)}
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--users", type=int, help="default rows/10")
    ap.add_argument("--items", type=int, help="default rows/50")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--int-ids", action="store_true", help="integer ids 1..N instead of hex/ASIN strings")
    a = ap.parse_args(argv)
    print(json.dumps(generate(a.out_dir, a.rows, a.users, a.items, a.seed, a.int_ids), indent=1))


if __name__ == "__main__":
    main()
