"""Router training data from traces: per-step routing states, and their embeddings cached on disk."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from precision_router.routing.base import RoutingState, history_from_steps
from precision_router.traces.schema import Episode

__all__ = ["EmbeddingCache", "StepRecord", "episode_states", "sequences", "signal_rows"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepRecord:
    """One step of one episode, as the router saw it, plus what training needs."""

    episode_id: str
    index: int
    state: RoutingState
    kl: float | None
    route: str


def episode_states(episode: Episode, *, signals: bool = False) -> list[StepRecord]:
    """The routing state before each step of ``episode`` (the same state the router saw live).

    ``signals=True``: each state also carries the scores the step recorded as ``extras`` (the low
    model's log-probabilities over the candidates, ...; see
    :func:`~precision_router.evaluation.calibration.recorded_state`), for routers that read them.
    """
    from precision_router.evaluation.calibration import recorded_state

    actions = [s.action for s in episode.steps]
    observations = [s.observation for s in episode.steps]
    records = []
    for t, step in enumerate(episode.steps):
        history = history_from_steps(actions[:t], observations[: t + 1])
        state = RoutingState(episode.task, history, episode.conversation_id)
        if signals:
            state = recorded_state(step, state)
        records.append(StepRecord(episode.episode_id, t, state, step.kl, step.route))
    return records


def signal_rows(records: Sequence[StepRecord]) -> torch.Tensor:
    """The low model's signals (:func:`~precision_router.routing.probe.probe_features`) of each record's state."""
    from precision_router.routing.probe import probe_features

    return torch.tensor([probe_features(r.state) for r in records], dtype=torch.float32)


class EmbeddingCache:
    """Step-text embeddings kept on disk, so each distinct text is embedded once across runs.

    Args:
        encoder: a :class:`~precision_router.routing.StepEncoder` (anything with ``name``, ``dim``
            and ``encode(texts) -> (n, dim) tensor``).
        path: the cache file (``None``: in memory only).
    """

    def __init__(self, encoder: Any, path: str | os.PathLike[str] | None = None) -> None:
        self.encoder = encoder
        self.path = Path(path) if path else None
        self._vectors: dict[str, torch.Tensor] = {}
        self._dirty = False
        if self.path and self.path.exists():
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
            if saved.get("encoder") == encoder.name:
                self._vectors = dict(zip(saved["keys"], saved["vectors"], strict=True))
            else:
                logger.warning(
                    "%s holds %s embeddings, not %s: ignoring it", self.path, saved.get("encoder"), encoder.name
                )

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def __len__(self) -> int:
        return len(self._vectors)

    def embed(self, texts: Iterable[str], batch_size: int = 256, progress: bool = False) -> dict[str, torch.Tensor]:
        """Embeddings of ``texts`` by text (missing ones are computed in batches and cached)."""
        from tqdm.auto import tqdm

        unique = list(dict.fromkeys(texts))
        missing = [t for t in unique if self._key(t) not in self._vectors]
        for start in tqdm(
            range(0, len(missing), batch_size), desc="embedding steps", disable=not progress or not missing
        ):
            chunk = missing[start : start + batch_size]
            for text, vector in zip(chunk, self.encoder.encode(chunk), strict=True):
                self._vectors[self._key(text)] = vector.float().cpu()
            self._dirty = True
        return {t: self._vectors[self._key(t)] for t in unique}

    def save(self) -> None:
        """Write the cache file (atomically) if anything was added."""
        if not self.path or not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(self._vectors)
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save(
            {"encoder": self.encoder.name, "keys": keys, "vectors": torch.stack([self._vectors[k] for k in keys])}, tmp
        )
        tmp.replace(self.path)
        self._dirty = False


def sequences(
    records: Sequence[StepRecord], cache: EmbeddingCache, max_steps: int, progress: bool = False
) -> list[torch.Tensor]:
    """The embedded router input ``[z_task, z_1 .. z_t]`` of each record (last ``max_steps`` steps kept)."""
    texts_per_record = [record.state.window(max_steps) for record in records]
    vectors = cache.embed((t for texts in texts_per_record for t in texts), progress=progress)
    cache.save()
    return [torch.stack([vectors[t] for t in texts]) for texts in texts_per_record]
