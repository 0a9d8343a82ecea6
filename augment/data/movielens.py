"""MovieLens-100K raw tables, read from the `recbole` wheel on PyPI (the only registry this machine may reach).

The wheel carries RecBole's atomic files `ml-100k.{inter,item,user}`: tab-separated, with typed headers such as
``item_id:token  movie_title:token_seq``. We fetch the wheel with pip, check its sha256, and read the three files
with ``zipfile``; recbole itself is never imported (it would pull torch and much else).

    python -m augment.data.movielens var/cache          # fetch (or reuse) the wheel and print the table shapes

MovieLens terms: research use, cite Harper & Konstan 2015 (ACM TiiS 5(4)); do not commit the files.
"""
from __future__ import annotations

import csv
import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pandas as pd

from augment.data.errors import DataError, decode_utf8
from common.files import file_sha256, fsync_path

log = logging.getLogger(__name__)

ML100K_DIR = "recbole/dataset_example/ml-100k"
ML100K_TABLES = ("inter", "item", "user")



def fetch_recbole_wheel(cache_dir: Path, version: str, sha256: str) -> Path:
    """Return the path of the verified ``recbole==<version>`` wheel in ``cache_dir``, downloading it if needed.

    A cached wheel is reused only when its hash matches; a mismatching download is deleted and raises DataError.
    The download lands in a temp dir inside ``cache_dir`` so the final ``os.replace`` is atomic.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"recbole-{version}-py3-none-any.whl"
    if target.exists():
        if file_sha256(target) == sha256:
            return target
        log.warning("cached %s has the wrong sha256; downloading again", target)
        target.unlink()

    tmp = Path(tempfile.mkdtemp(prefix=".recbole-dl-", dir=cache_dir))
    try:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", f"recbole=={version}", "-d", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            raise RuntimeError(f"pip download recbole=={version} failed (exit {proc.returncode}): {tail}")
        wheels = list(tmp.glob("recbole-*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"pip download recbole=={version} produced {[p.name for p in tmp.iterdir()]}")
        actual = file_sha256(wheels[0])
        if actual != sha256:
            raise DataError(f"sha256 mismatch: expected {sha256}, got {actual}; deleted the download",
                            file=wheels[0].name)
        fsync_path(wheels[0])  # durable like every other write (common/files.py)
        os.replace(wheels[0], target)
        fsync_path(cache_dir)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_recbole_table(wheel: Path, table: str) -> pd.DataFrame:
    """One ML-100K atomic file as strings: columns renamed without their ``:type`` suffix, plus ``_line``.

    ``_line`` is the 1-based line number inside the file (header = line 1), so later checks can point at it.
    Everything stays a string here; typing happens in ``augment.data.ingest`` where errors can name the cell.
    """
    member = f"{ML100K_DIR}/ml-100k.{table}"
    label = f"ml-100k.{table}"
    with zipfile.ZipFile(wheel) as zf:
        try:
            raw = zf.read(member)
        except KeyError:
            raise DataError(f"not found in {Path(wheel).name}", file=member) from None
    text = decode_utf8(raw, label, sep="\t")
    # QUOTE_NONE: titles contain bare quotes (e.g. 'Big Lebowski, The'), and RecBole files are not CSV-quoted.
    frame = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE,
                        skip_blank_lines=False)
    frame.columns = [c.split(":", 1)[0] for c in frame.columns]
    frame["_line"] = range(2, len(frame) + 2)
    return frame


def read_ml100k(wheel: Path) -> dict[str, pd.DataFrame]:
    """The three raw tables keyed by ``inter``, ``item``, ``user``."""
    return {t: read_recbole_table(wheel, t) for t in ML100K_TABLES}


if __name__ == "__main__":
    from configs import DataConfig

    cfg = DataConfig()
    wheel = fetch_recbole_wheel(Path(sys.argv[1] if len(sys.argv) > 1 else "var/cache"),
                                cfg.recbole_version, cfg.recbole_sha256)
    for name, df in read_ml100k(wheel).items():
        print(name, df.shape, list(df.columns))
