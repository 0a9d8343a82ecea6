"""The embedded SmolLM2 is converted once even when two processes ask for it at the same moment (two generation
shards on a fresh machine): the second waits for the first and reuses its directory."""
from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(600)]

SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(message)s")
from augment.embedded_models import convert_smollm2
print(convert_smollm2(__import__("pathlib").Path(sys.argv[1])))
"""


def test_two_processes_convert_once(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=540) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    paths = {out.strip().splitlines()[-1] for out, _ in outs}
    assert len(paths) == 1
    conversions = sum(err.count("converting ") for _, err in outs)
    assert conversions == 1, [err[-2000:] for _, err in outs]
    converted = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert len(converted) == 1 and (converted[0] / "config.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".convert-")]  # no temp dir left behind
