"""Fixtures shared by the augment stage tests."""
import pytest


@pytest.fixture
def tiny(tmp_path, make_tiny_config):
    """(config, versions) of the tiny dataset after ingest + split (no LLM)."""
    from augment import stages
    from configs import load_config

    cfg = load_config(make_tiny_config(tmp_path))
    versions = stages.ingest(cfg)
    versions.update(stages.split(cfg, versions))
    return cfg, versions


class FakeBackend:
    """A named fake generation backend (augment/llm/backend.py protocol) for unit tests: answers every request
    from `answer(request) -> ChatResult` and finishes them out of order (newest first), `per_poll` at a time, so
    the stage's submit-ahead window, retries and batch commits are exercised without an LLM."""

    name = "fake"

    def __init__(self, window: int = 8, per_poll: int = 3):
        from augment.llm.backend import ChatResult

        self.window, self.per_poll = window, per_poll
        self.queued: list = []
        self.requests: list = []  # every request ever submitted, in order
        self.max_inflight = 0
        self.started = 0
        self.tokens = lambda convs: [10] * len(convs)
        self.answer = lambda r: ChatResult(
            text=f"fake knowledge about a prompt of {len(r.conversation[-1]['content'])} characters",
            prompt_tokens=10, output_tokens=r.max_tokens, finish_reason="length", key=r.key)

    def start(self) -> None:
        self.started += 1

    def capacity(self) -> int:
        return self.window

    def prompt_tokens(self, conversations):
        return self.tokens(conversations)

    def submit(self, requests) -> None:
        self.queued += list(requests)
        self.requests += list(requests)
        self.max_inflight = max(self.max_inflight, len(self.queued))

    def poll(self):
        done, self.queued = self.queued[-self.per_poll:][::-1], self.queued[:-self.per_poll]
        return [self.answer(r) for r in done]

    def counters(self) -> dict:
        return {}

    def describe(self) -> dict:
        return {}

    def close(self) -> None:
        pass


@pytest.fixture
def fake_backend(monkeypatch) -> FakeBackend:
    """A FakeBackend that generation.backend resolves to in this test (open_backend patched)."""
    from augment.llm import backends as chat_backend
    fake = FakeBackend()
    monkeypatch.setattr(chat_backend, "open_backend", lambda cfg: fake)
    return fake
