"""What a generation backend is: chat requests in, results out as they finish, with a bounded number in flight.

The generation stage (augment/llm/generate.py) keeps a backend full: it submits requests up to the backend's
capacity, polls for whichever finish first, validates them, resubmits rejected ones with the next attempt's
sampling, and commits finished rows to the cache in batches. So the engine never drains at a commit boundary,
and the cache still gains one file per `generation.batch_size` rows (the unit of lost work on a crash).

Backends (`generation.backend`):

| backend  | module                     | where the LLM runs                                                   |
|----------|----------------------------|----------------------------------------------------------------------|
| `vllm`   | augment/llm/engine.py      | an engine in this process (its engine core is a child process)       |
| `openai` | augment/llm/openai_fleet.py    | one or more OpenAI-compatible endpoints (a vLLM server fleet)         |
| `ray`    | augment/llm/ray_llm.py         | Ray Data LLM: vLLM engine actors on a Ray cluster (or a local one)    |

Every backend sees the same requests (conversation + sampling + seed + optional JSON schema) and returns the
same `ChatResult`, so the cache, validation, retries, lineage and publish steps do not know which one ran.

    from augment.llm.backends import open_backend
    backend = open_backend(cfg.generation)   # not started: start() builds the engine / checks the endpoints
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence


class BackendError(RuntimeError):
    """The backend could not answer (after its own retries) or was misconfigured: the shard stops; what it
    committed stays, and a re-run resumes from there. The CLI prints it as one line (exit code 1)."""


@dataclass(frozen=True)
class ChatRequest:
    key: str  # the caller's id for this attempt; comes back on its result
    conversation: list[dict]
    max_tokens: int
    temperature: float
    top_p: float
    repetition_penalty: float
    seed: int
    json_schema: dict | None = None
    stop: tuple[str, ...] = ()  # generation ends at the first of these (not part of the text)


@dataclass(frozen=True)
class ChatResult:
    text: str
    prompt_tokens: int
    output_tokens: int
    finish_reason: str
    key: str = ""
    # A request the backend refused for good (not a transient fault): "prompt_too_long" is the one the stage
    # knows how to publish (flagged, never knowledge); transient faults are retried inside the backend.
    error: str | None = None


class ChatBackend(Protocol):
    name: str

    def start(self) -> None:
        """Build the engine / check the endpoints; idempotent. Its cost is reported apart from generation."""

    def capacity(self) -> int:
        """How many requests to keep submitted and unfinished."""

    def prompt_tokens(self, conversations: Sequence[list[dict]]) -> list[int] | None:
        """Prompt lengths after the chat template, or None when the backend reports too-long prompts itself."""

    def submit(self, requests: Sequence[ChatRequest]) -> None:
        """Queue requests; returns at once."""

    def poll(self) -> list[ChatResult]:
        """Block until at least one submitted request has finished and return every finished one (any order);
        [] when nothing is in flight. A fault that retries could not fix raises."""

    def counters(self) -> dict[str, int]:
        """Cumulative engine counters (prompt/output tokens, prefix-cache queries/hits) where exposed."""

    def describe(self) -> dict[str, Any]:
        """Where it ran, for the shard's stats: cores, endpoints, Ray resources."""

    def close(self) -> None:
        """Release what start() took unless it is meant to outlive the call (the in-process engine is cached)."""
