"""A pipeline whose feature store is on S3 (a real S3-compatible server on 127.0.0.1), no vLLM: ingest -> split ->
prompts -> publish-texts of an external text file (generation.external, "Bring your own text") -> encode (real
sentence-transformers MiniLM) -> `python -m models retrain` reading from the S3 store -> the champion served with
its pinned versions read back from S3. Only the caches and the registry are local."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from augment import stages
from configs import REPO_ROOT, load_config


@pytest.mark.vllm  # real MiniLM encoder; moto's S3 server (s3_server) is a venv package, no install
@pytest.mark.timeout(900)
def test_stages_retrain_and_serving_on_an_s3_store(tmp_path, make_tiny_config, s3_server):
    bucket = s3_server.bucket("run")
    uri = f"s3://{bucket}/features"
    tags = tmp_path / "tags.csv"
    tags.write_text("item_id,text\n" + "".join(f"{i},Tagged by users as: tag{i % 4} and item number {i}\n"
                                               for i in range(1, 21)))
    path = make_tiny_config(tmp_path, **{
        "feature_store": {"uri": uri, "s3": {"endpoint_override": s3_server.endpoint, "region": "us-east-1"}},
        "generation.external": {"item": {"path": str(tags), "source": "tags"}},
        "train.backbones": ["lightgbm"], "train.variants": ["base", "llm_item"], "train.lgbm_rounds": 30})
    cfg = load_config(path)
    out = stages.ingest(cfg)
    out.update(stages.split(cfg, out))
    out.update(stages.prompts(cfg, out))
    assert stages.generate(cfg, "item", out)[0]["skipped"].startswith("generation.external.item is set")
    out.update(stages.publish_texts(cfg, "item", out))
    out.update(stages.encode(cfg, "item", out))
    out.update(stages.encode(cfg, "item_raw", out))  # the no-LLM twin of llm_item reads it

    work = cfg.workdir_path
    assert not (work / "feature_store").exists()  # every table went to the bucket
    assert (work / "encode_cache").is_dir()  # the caches stay in the local workdir
    store = stages.store_for(cfg)
    assert store.uri == uri and set(out) <= set(store.tables())
    emb = store.read_pandas("item_knowledge_emb", out["item_knowledge_emb"])
    assert len(emb) == 20 and len(emb["emb"].iloc[0]) == 384
    keys = s3_server.keys(bucket)
    assert f"features/item_knowledge_emb/version={out['item_knowledge_emb']}" in keys

    # a re-run of a stage reuses what is on S3
    assert stages.encode(cfg, "item", out) == {"item_knowledge_emb": out["item_knowledge_emb"]}
    assert s3_server.keys(bucket) == keys

    done = subprocess.run([sys.executable, "-m", "models", "retrain", "--config", str(path)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    champ = json.loads((work / "registry" / "ctr" / "champion.json").read_text())
    model_dir = work / "registry" / "ctr" / champ["model_path"]
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["feature_store"] == {"uri": uri, "s3": {"endpoint_override": f"127.0.0.1:{s3_server.port}",
                                                            "region": "us-east-1", "scheme": "http"}}
    assert manifest["feature_tables"]["item_knowledge_emb"] == out["item_knowledge_emb"]
    assert "AWS" not in json.dumps(manifest) and "testing" not in json.dumps(manifest["feature_store"])

    # serving finds the pinned versions on S3 from the manifest alone (there is no local store to fall back on)
    from models.serving import Scorer

    scorer = Scorer.from_registry(work, "ctr")
    served = scorer.feature_versions  # the pinned tables this model reads
    assert served and served.items() <= manifest["feature_tables"].items() and "users" in served
    p = scorer.score(1, [1, 2, 3])
    assert p.shape == (3,) and ((p > 0) & (p < 1)).all()
    # --feature-store overrides it (here: the same bucket named by URI options)
    override = f"{uri}?endpoint_override=127.0.0.1:{s3_server.port}&scheme=http&region=us-east-1"
    again = Scorer.from_registry(work, "ctr", feature_store=override)
    assert (again.score(1, [1, 2, 3]) == p).all()

    from models.serving.hot_swap import ScorerHolder

    holder = ScorerHolder(work, "ctr", feature_store=None)  # what `python -m models.serving` runs
    assert holder.reload()["swapped"] and holder.current.feature_versions == served

    # the store CLI sees the same tables, all valid
    check = subprocess.run([sys.executable, "-m", "feature_store", "--root", uri, "--s3-endpoint", s3_server.endpoint,
                            "validate"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr[-2000:]
    assert check.stdout.count("OK   ") >= len(out) and "FAIL" not in check.stdout
    cfg_saved = yaml.safe_load(path.read_text())
    assert "AWS_ACCESS_KEY_ID" not in json.dumps(cfg_saved)
