"""generation.sampling.stop: free-text requests carry the stop strings to every backend (vLLM in-process, an
OpenAI-compatible fleet, Ray Data) and into the cache key; JSON answers never get them; unset, versions made before
the setting existed keep their keys."""
from __future__ import annotations

import pytest

from augment.llm.backend import ChatRequest
from augment.llm.generate import sampling_settings, stop_for
from configs import GenerationConfig

pytestmark = pytest.mark.timeout(120)
STOP = GenerationConfig.model_validate({"sampling": {"stop": ["\n\n"]}})


def test_stop_strings_are_keyed_only_when_set_and_only_for_free_text():
    plain = sampling_settings(GenerationConfig(), "item")
    assert "stop" not in plain  # unchanged cache keys and versions for configs without stop strings
    assert sampling_settings(STOP, "item") == {**plain, "stop": ["\n\n"]}
    assert stop_for(STOP, {"type": "object"}) == () and "stop" not in sampling_settings(STOP, "item_tags", {"x": 1})


def test_every_backend_sends_them():
    from types import SimpleNamespace

    from augment.llm.engine import sampling_params
    from augment.llm.openai_fleet import OpenAIFleet
    from augment.llm.ray_llm import sampling_row

    request = ChatRequest(key="0:0", conversation=[{"role": "user", "content": "hi"}], max_tokens=8,
                          temperature=0.0, top_p=1.0, repetition_penalty=1.0, seed=0, stop=("\n\n",))
    assert sampling_params(request).stop == ["\n\n"]
    assert sampling_row(request)["stop"] == ["\n\n"]
    assert OpenAIFleet._body(SimpleNamespace(model="m"), request)["stop"] == ["\n\n"]
    assert "stop" not in sampling_row(ChatRequest(**{**request.__dict__, "stop": ()}))
