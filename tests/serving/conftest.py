"""Fixtures for tests/serving: a tiny feature store (the pipeline's table specs, planted signal) and a registry
trained on it by the real retrain stage, so the scorer is tested against the manifests production writes.

Some items are left out of item_knowledge_emb and some users out of user_profile_emb (LLM generation gaps), so the
'default vector' path is exercised for ids the attribute tables know."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

N_USERS, N_ITEMS, DIM = 60, 300, 8
NO_ITEM_VECTOR = (N_ITEMS - 1, N_ITEMS)  # in the items table, absent from item_knowledge_emb
NO_USER_VECTOR = (N_USERS,)              # in the users table, absent from user_profile_emb


@pytest.fixture(scope="session")
def publish_serving_store(planted_store):
    """publish_serving_store(root): tests/conftest.py's planted store, smaller, 8-d vectors, multi-genre items, and
    with the vector gaps above (shared as a fixture: conftest modules are not importable)."""
    def publish(root: Path) -> None:
        planted_store(root, n_users=N_USERS, n_items=N_ITEMS, dim=DIM, latent_dim=4, time_span_s=10**6,
                      split_p=(0.6, 0.2, 0.2), multi_genre=True, no_item_vector=NO_ITEM_VECTOR,
                      no_user_vector=NO_USER_VECTOR, tag="serving-test")
    return publish


@pytest.fixture(scope="session")
def served_workdir(tmp_path_factory, publish_serving_store) -> Path:
    """<tmp>/feature_store + <tmp>/registry/ctr with lightgbm/{base,llm}, deepfm/{llm,llm_kar}, din/llm."""
    from configs import RunConfig
    from feature_store import FeatureStore
    from models.retrain import latest_versions, retrain

    work = tmp_path_factory.mktemp("serving")
    publish_serving_store(work / "feature_store")
    train = dict(seeds=(0,), threads=1, deepfm_epochs=2, deepfm_batch_size=256, deepfm_lr=5e-3, embedding_dim=4,
                 lgbm_rounds=30, lgbm_early_stopping=10, vector_reduce={"dim": 3}, backbones=("lightgbm", "deepfm", "din"),
                 variants=("base", "llm", "llm_kar"), kar_hidden=8, kar_out_dim=4, history_len=5)
    cfg = RunConfig.model_validate({"workdir": str(work), "train": train})
    retrain(cfg, latest_versions(FeatureStore(work / "feature_store"), cfg))
    return work


@pytest.fixture(scope="session")
def model_dirs(served_workdir) -> dict[str, Path]:
    """'<backbone>/<variant>' -> saved model dir of the single run."""
    runs = [p for p in (served_workdir / "registry" / "ctr").iterdir() if (p / "run.json").is_file()]
    assert len(runs) == 1, runs
    return {f"{p.parent.parent.name}/{p.parent.name}": p for p in runs[0].glob("*/*/seed=0")}


@pytest.fixture(scope="session")
def vector_gaps() -> dict:
    """Ids the attribute tables know but the LLM vector tables lack (conftest modules are not importable)."""
    return {"items": NO_ITEM_VECTOR, "users": NO_USER_VECTOR}


@pytest.fixture()
def server(served_workdir, tmp_path):
    """(workdir copy, port): a real uvicorn server on 127.0.0.1 over a copy of served_workdir, polling every 0.2 s."""
    from models.serving.loadgen import stop_server, wait_healthy
    from ops.local_services import free_port

    work = tmp_path / "w"
    shutil.copytree(served_workdir, work, symlinks=True)
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "models.serving", "--workdir", str(work), "--port", str(port),
                             "--poll-seconds", "0.2", "--log-level", "warning"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(port, timeout=90)
        yield work, port
    finally:
        stop_server(proc)
        log.close()
        print((tmp_path / "server.log").read_text()[-3000:])
