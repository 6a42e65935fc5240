"""The learned routing policy: :class:`RouterNet` over :class:`StepEncoder` embeddings."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from precision_router.locks import PicklableLock
from precision_router.routing.base import ROUTES, Route, RouteDecision, RoutingState, keyed_uniform, threshold_name

if TYPE_CHECKING:
    import torch

    from precision_router.routing.encoder import StepEncoder
    from precision_router.routing.network import RouterNet

__all__ = ["LearnedRouter"]


class LearnedRouter:
    """A :class:`~precision_router.routing.Router` backed by a trained :class:`RouterNet`.

    Greedy by default: route high when ``p_high >= threshold`` (0.5 is the arg-max for K=2;
    :func:`~precision_router.routing.calibrate_threshold` picks one for a target share). With
    ``sample=True`` the route is drawn from the network's distribution (used by GRPO).

    Args:
        net: the router network.
        encoder: the step encoder; its name must match the one the network was trained with.
        threshold: ``p_high`` at or above which a step goes high.
        sample: draw routes instead of thresholding.
        seed: makes sampled routes a pure function of ``(seed, conversation, step)`` (the same draws
            in any process, e.g. on rollout workers); ``None`` draws from a private generator.
        name: the policy name recorded in traces.
        version: what the traces record as the router's version (default: the weights' fingerprint).
    """

    def __init__(
        self,
        net: RouterNet,
        encoder: StepEncoder,
        *,
        threshold: float = 0.5,
        sample: bool = False,
        seed: int | None = None,
        name: str = "learned",
        version: str | None = None,
    ) -> None:
        from precision_router.errors import CheckpointMismatchError

        if net.config.encoder != encoder.name:
            msg = (
                f"router was trained on {net.config.encoder!r} embeddings but the encoder is "
                f"{encoder.name!r}; pass StepEncoder({net.config.encoder!r})"
            )
            raise CheckpointMismatchError(msg)
        self.net = net.eval()
        self.encoder = encoder
        self.threshold = threshold
        self.sample = sample
        self.name = name
        self.seed = seed
        self.version = version or net.fingerprint()
        self._lock = PicklableLock()

    def __repr__(self) -> str:
        return f"LearnedRouter(version={self.version!r}, threshold={self.threshold}, sample={self.sample})"

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        encoder: StepEncoder | None = None,
        **kwargs: object,
    ) -> LearnedRouter:
        """Load a router saved by training (or :meth:`RouterNet.save`) with its matching encoder."""
        from precision_router.routing.encoder import StepEncoder
        from precision_router.routing.network import RouterNet

        net = RouterNet.load(path, encoder=encoder.name if encoder is not None else None)
        encoder = encoder or StepEncoder(net.config.encoder)
        if encoder.dim != net.config.embed_dim:
            from precision_router.errors import CheckpointMismatchError

            msg = (
                f"{path} expects {net.config.embed_dim}-d embeddings but {encoder.name!r} gives "
                f"{encoder.dim}-d; use the encoder the router was trained with"
            )
            raise CheckpointMismatchError(msg)
        return cls(net, encoder, **kwargs)  # type: ignore[arg-type]

    def with_threshold(self, threshold: float) -> LearnedRouter:
        """The same network at another threshold (named ``<name>@<threshold>``)."""
        return LearnedRouter(
            self.net,
            self.encoder,
            threshold=threshold,
            sample=self.sample,
            seed=self.seed,
            name=threshold_name(self.name, threshold),
            version=self.version,
        )

    def sequence(self, state: RoutingState) -> torch.Tensor:
        """The embedded router input for ``state``: :meth:`RoutingState.window` (task + last ``max_steps`` steps)."""
        return self.encoder.encode(state.window(self.net.config.max_steps))

    def score(self, state: RoutingState) -> float:
        """``p_high`` of ``state``."""
        return float(self.probs(state)[-1])

    @property
    def needs_scores(self) -> tuple[str, ...]:
        """``("low",)`` for a router that reads the low model's signals, else ``()``."""
        return ("low",) if self.net.config.n_signals else ()

    def probs(self, state: RoutingState) -> torch.Tensor:
        """Probabilities over the K routes for one state."""
        signals = None
        if self.net.config.n_signals:
            import torch

            from precision_router.routing.probe import probe_features

            signals = torch.tensor([probe_features(state)])
        return self.net.probs([self.sequence(state)], signals)[0]

    def decide(self, state: RoutingState) -> RouteDecision:
        """Route by threshold (or by sampling, when ``sample=True``)."""
        import torch

        probs = self.probs(state)
        p_high = float(probs[-1])
        if self.sample:
            if self.seed is not None:
                u = keyed_uniform(self.seed, state.conversation_id, state.step_index)
                index = min(int((torch.cumsum(probs, 0) <= u).sum()), len(probs) - 1)
            else:
                with self._lock:
                    index = int(torch.multinomial(probs, 1))
            route: Route = "high" if index == len(probs) - 1 else "low"
        else:
            route = ROUTES[1] if p_high >= self.threshold else ROUTES[0]
        return RouteDecision(route, p_high)
