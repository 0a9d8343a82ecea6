"""Hot swap: follow the registry's champion pointer, load a newly promoted model beside the old one, swap atomically.
The same for fresh features: when serving_features.json (models/feature_refresh.py) names the champion with newer
compatible table versions, the champion is loaded again with them and swapped in the same way.

`ScorerHolder.current` is one attribute read: a request takes the scorer once and finishes on it, even if a swap
happens meanwhile (the old scorer stays alive until its last request drops the reference). `reload()` loads and
compiles the new model completely BEFORE the assignment, so no request ever sees a half-built scorer; a load that
fails leaves the old model serving and is not retried until champion.json changes again.

    holder = ScorerHolder("var/ml100k", "ctr"); holder.reload(); holder.start_polling(2.0)
    scorer = holder.current
"""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Callable

from models.feature_refresh import serving_features_path, serving_pins
from models.registry import CHAMPION, MODEL_NAME, model_feature_store, read_model_manifest, registry_root
from models.serving.scorer import Scorer

log = logging.getLogger(__name__)


class ScorerHolder:
    def __init__(self, workdir: str | Path, name: str = MODEL_NAME, threads: int = 1,
                 on_swap: Callable[[Scorer], None] | None = None,
                 on_failure: Callable[[Exception], None] | None = None, feature_store: str | None = None):
        self.workdir, self.name, self.threads = Path(workdir), name, threads
        self.feature_store = feature_store  # None: where each model's manifest says (model_feature_store)
        self.champion_file = registry_root(workdir) / name / CHAMPION
        self._current: Scorer | None = None
        self._lock = threading.Lock()  # one load at a time; requests never take it
        self._failed: str | None = None
        self._state: str | None = None  # champion.json + serving_features.json as the current scorer was loaded
        self.on_swap, self.on_failure = on_swap, on_failure  # metrics hooks
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    @property
    def current(self) -> Scorer | None:
        return self._current

    def _champion(self) -> tuple[str | None, str | None]:
        """(model_path, raw text) of champion.json; (None, None) when nothing is promoted yet."""
        try:
            text = self.champion_file.read_text()
        except FileNotFoundError:
            return None, None
        try:
            return json.loads(text)["model_path"], text
        except (json.JSONDecodeError, KeyError) as exc:
            raise ValueError(f"{self.champion_file}: unreadable champion pointer ({exc})") from exc

    def reload(self, force: bool = False) -> dict:
        """Swap to the champion if it differs from the model being served; returns what happened."""
        with self._lock:
            old = self._current
            try:
                path, text = self._champion()
            except ValueError as exc:
                return self._failure(exc, None)
            if path is None:
                return {"swapped": False, "reason": f"no champion yet ({self.champion_file})"}
            model_dir = registry_root(self.workdir) / self.name / path
            refresh = serving_features_path(self.workdir, self.name)
            state = text + (refresh.read_text() if refresh.is_file() else "")  # either file changing means reload
            if old is not None and state == self._state and not force:
                return {"swapped": False, "reason": "already serving the champion", "model": path}
            if state == self._failed and not force:
                return {"swapped": False, "reason": f"champion {path} failed to load before: {self.last_error}"}
            try:
                trained = read_model_manifest(model_dir).get("feature_tables", {})
                pins, refresh_text = serving_pins(self.workdir, self.name, path, trained)
                store = model_feature_store(model_dir, registry_root(self.workdir).parent, self.feature_store)
                new = Scorer.from_model_dir(model_dir, store, threads=self.threads, pins=pins,
                                            info={"name": self.name, "model_path": path,
                                                  "promoted_at": json.loads(text).get("promoted_at"),
                                                  "features_refreshed": bool(refresh_text)})
            except Exception as exc:  # noqa: BLE001 - a bad model must not take the service down
                self._failed = state
                return self._failure(exc, path)
            self._current = new  # the swap: one reference assignment
            self._state, self._failed, self.last_error = state, None, None
            log.info("serving %s (loaded in %.2fs; was %s)", path, new.info["load_seconds"],
                     old.model_version if old else None)
            if self.on_swap:
                self.on_swap(new)
            return {"swapped": True, "model": path, "previous": old.model_version if old else None,
                    "feature_tables": new.feature_versions, "load_seconds": new.info["load_seconds"]}

    def _failure(self, exc: Exception, path: str | None) -> dict:
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.error("could not load champion %s: %s (still serving %s)", path, self.last_error,
                  self._current.model_version if self._current else None)
        if self.on_failure:
            self.on_failure(exc)
        return {"swapped": False, "reason": f"load failed: {self.last_error}", "model": path}

    def start_polling(self, every_seconds: float) -> None:
        """Check the champion pointer every `every_seconds` in a daemon thread (0 = never)."""
        if every_seconds <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(every_seconds):
                try:
                    self.reload()
                except Exception:  # noqa: BLE001 - keep polling whatever happens
                    log.exception("champion poll failed")

        self._thread = threading.Thread(target=loop, name="champion-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
