"""The serving path (Scorer, HTTP app, a scored request) never imports vLLM, Ray, transformers,
sentence-transformers, Airflow or any of `augment`: checked in a fresh interpreter's sys.modules."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_ROOTS = ("vllm", "ray", "transformers", "sentence_transformers", "airflow", "augment")

SCRIPT = """
import json, sys
from fastapi.testclient import TestClient
from models.serving import Scorer
from models.serving.app import ServingSettings, create_app
scorer = Scorer.from_registry(sys.argv[1], "ctr")
scorer.score(1, [1, 2, 3], context={"gender": "F"})
with TestClient(create_app(ServingSettings(__import__("pathlib").Path(sys.argv[1]), poll_seconds=0))) as c:
    assert c.post("/score", json={"user_id": 1, "item_ids": [1, 2]}).status_code == 200
print(json.dumps(sorted(sys.modules)))
"""


def test_serving_imports_no_llm_code(served_workdir):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(served_workdir)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    modules = json.loads(out.stdout.strip().splitlines()[-1])
    bad = [m for m in modules if m.split(".")[0] in FORBIDDEN_ROOTS]
    assert not bad, bad
    assert "models.serving.scorer" in modules and "torch" in modules  # the check looked at a real serving run
