"""The routed ReAct agent for ALFWorld, as a LangGraph ``StateGraph``.

Three nodes run in a loop until the game is won or the step cap is reached:

- ``route`` asks the router which precision takes the next step (and records ``p_high``);
- ``act``: the chosen model picks the next command. In ``score`` mode it scores every admissible
  command with packed candidate scoring (prefix KV cache kept between the steps of an episode)
  and takes the most likely one; in ``generate`` mode it writes the command, and an inadmissible
  command is escalated to the high model (low route) or mapped to the closest admissible one;
- ``env`` plays the command in ALFWorld and records the step in the trace.

The agent's model is a :class:`~precision_router.RoutedChatModel` (two precisions, or a ladder
from :meth:`~precision_router.RoutedChatModel.from_ladder`); every step goes through the core's
routed-step lifecycle (:class:`~precision_router.step.RoutedStep`): the tracker decides, the
chosen rung acts, an unusable reply escalates to the top rung by the core's escalation rule (the
agent's validator: the command must be admissible), and the step is recorded as every entry
point records it.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import torch
from langchain_core.messages import AIMessage
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from precision_router.chat_model import RoutedChatModel
from precision_router.models.llamacpp_scoring import scorer_for
from precision_router.models.local import LocalChatModel
from precision_router.models.scoring import ActionScorer, action_log_probs, kl_divergence
from precision_router.routing.base import RouteDecision, scores_needed
from precision_router.step import RoutedStep
from precision_router.traces.schema import Episode
from precision_router_alfworld.prompts import Example, build_messages
from precision_router_alfworld.settings import AgentConfig

__all__ = ["AgentConfig", "AlfworldAgent"]

logger = logging.getLogger(__name__)


_TAKE = re.compile(r"^take (.+) from (.+)$")
_MOVE = re.compile(r"^move (.+) to (.+)$")
_INVERSE_VERBS = {"open": "close", "close": "open"}


def excluded(command: str, exclude: Sequence[str]) -> bool:
    """Whether ``command`` is ``exclude``d: equal to an entry or starting with an entry and a space."""
    return any(command == entry or command.startswith(entry + " ") for entry in exclude)


def inverse_command(command: str) -> str | None:
    """The command that undoes ``command`` (``take X from R`` <-> ``move X to R``, ``open`` <-> ``close``)."""
    if match := _TAKE.match(command):
        return f"move {match.group(1)} to {match.group(2)}"
    if match := _MOVE.match(command):
        return f"take {match.group(1)} from {match.group(2)}"
    verb, _, rest = command.partition(" ")
    return f"{_INVERSE_VERBS[verb]} {rest}" if verb in _INVERSE_VERBS and rest else None


class EpisodeState(TypedDict, total=False):
    """The graph state of one episode."""

    conversation_id: str
    task: str
    opening: str
    turns: list[tuple[str, str]]
    observation: str
    admissible: list[str]
    route: str
    p_high: float | None
    step: RoutedStep
    action: str
    scored: dict[str, list[float]]
    pending: dict[str, Any]
    replay: list[tuple[str, str]]
    won: bool
    done: bool


@dataclass
class EpisodeContext:
    """Per-episode objects the nodes use but that are not graph state: the environment and examples."""

    env: Any
    examples: Sequence[Example] = ()


class AlfworldAgent:
    """A routed ReAct agent for ALFWorld games.

    Args:
        model: the routed model; its ``high`` and ``low`` must be
            :class:`~precision_router.LocalChatModel` s in ``score`` mode (any chat models in
            ``generate`` mode).
        config: how the agent acts.
        examples: a function from task type to the solved example games shown in the prompt
            (e.g. built with :func:`~precision_router_alfworld.fewshot_transcript`).
    """

    def __init__(
        self,
        model: RoutedChatModel,
        config: AgentConfig | None = None,
        examples: Callable[[str], Sequence[Example]] | None = None,
    ) -> None:
        self.model = model
        self.config = config or AgentConfig()
        self.examples = examples or (lambda task_type: ())
        self.tracker = model.tracker
        self.ladder = model.ladder
        self.scorers: dict[str, ActionScorer] = {}
        self._locals: dict[str, LocalChatModel] = {}
        self._neutral_scorers: dict[str, ActionScorer] = {}
        self._neutral: dict[str, dict[str, float]] = {}
        if self.config.mode == "score":
            for rung, chat in zip(self.ladder.names, model.models, strict=True):
                if not isinstance(chat, LocalChatModel):
                    msg = (
                        "score mode needs local models (LocalChatModel, LlamaCppChatModel); "
                        f"the {rung} model is {type(chat).__name__}"
                    )
                    raise TypeError(msg)
                chat.ensure_loaded()
                self._locals[rung] = chat
                self.scorers[rung] = scorer_for(chat)
        self.needs_scores = scores_needed(model.router)
        if self.needs_scores and self.config.mode != "score":
            msg = f"the {model.router.name} router reads the low model's action scores: use mode='score'"
            raise ValueError(msg)
        self.graph = self._build()

    def _rung(self, route: str) -> str:
        """The rung a route names (``"high"`` / ``"low"``: the top / bottom rung)."""
        return self.ladder.names[self.ladder.index(route)]

    def _local(self, route: str) -> LocalChatModel:
        return self._locals[self._rung(route)]

    # -- graph -------------------------------------------------------------------------------
    def _build(self) -> Any:
        graph = StateGraph(EpisodeState, context_schema=EpisodeContext)
        graph.add_node("route", self._route)
        graph.add_node("act", self._act)
        graph.add_node("env", self._env)
        graph.add_edge(START, "route")
        graph.add_edge("route", "act")
        graph.add_edge("act", "env")
        graph.add_conditional_edges("env", lambda s: END if s.get("done") else "route", ["route", END])
        return graph.compile()

    def _route(self, state: EpisodeState, runtime: Runtime[EpisodeContext]) -> dict[str, Any]:
        history = [(a, o) for a, o in state.get("turns", [])]
        extras: dict[str, Any] = {}
        scored: dict[str, list[float]] = {}
        replayed = _replayed(state)
        wanted = ("low", "high") if "high" in self.needs_scores else self.needs_scores
        if replayed is not None:
            # a replayed step: its route and command are given, nothing is scored or asked
            top = replayed[1] in ("high", self.ladder.names[0])
            decision = RouteDecision(replayed[1], 1.0 if top else 0.0)
        elif wanted:
            # the router reads the models' own scores of the candidates before deciding
            candidates = self._candidates(state)
            prompt = self._local("low").render(self._messages(state, runtime))
            for route in wanted:
                rung = self._rung(route)
                scores = self.scorers[rung].score(prompt, candidates, normalize=self.config.normalize)
                scored[rung] = scores.tolist()
                extras[f"{route}_logprobs"] = action_log_probs(scores).tolist()
                extras[f"{route}_choice"] = candidates[int(self._penalized(scores, rung, state).argmax())]
            if len(wanted) == 2:
                low, high = (torch.tensor(scored[self._rung(r)], dtype=torch.float64) for r in ("low", "high"))
                extras["kl"] = kl_divergence(action_log_probs(low), action_log_probs(high))
        if replayed is None:
            decision = self.tracker.decide(state["conversation_id"], state["task"], history, extras)
        admissible = self._candidates(state)

        def admissible_command(reply: AIMessage) -> str | None:
            text = _command(reply)
            ok = text.lower().startswith("think:") or text in admissible
            return None if ok else f"inadmissible command {text!r}"

        step = RoutedStep.for_decision(
            self.tracker,
            state["conversation_id"],
            decision,
            self.model.models,
            escalate=self.model.escalate_on_parse_error,
            task=state["task"],
            observation=state["observation"],
            index=len(history),
            output_validator=admissible_command,
        )
        rung = self._rung(decision.route)
        return {"route": rung, "p_high": decision.p_high, "scored": scored, "step": step}

    def _messages(self, state: EpisodeState, runtime: Runtime[EpisodeContext]) -> list[Any]:
        prompt = self.config.prompt
        if self.config.mode == "generate" and not prompt.thoughts:
            prompt = dataclasses.replace(prompt, thoughts=True)
        return build_messages(
            state["opening"],
            state.get("turns", []),
            task=state["task"],
            examples=runtime.context.examples,
            config=prompt,
        )

    def _act(self, state: EpisodeState, runtime: Runtime[EpisodeContext]) -> dict[str, Any]:
        started = time.perf_counter()
        messages = self._messages(state, runtime)
        replayed = _replayed(state)
        if replayed is not None:
            action, pending = self._replay(state, messages, replayed[0])
        elif self.config.mode == "score":
            action, pending = self._act_by_score(state, messages)
        else:
            action, pending = self._act_by_generation(state, messages)
        pending["latency_ms"] = (time.perf_counter() - started) * 1000
        return {"action": action, "pending": pending}

    def _candidates(self, state: EpisodeState) -> list[str]:
        return [c for c in state["admissible"] if not excluded(c, self.config.exclude)]

    def _replay(self, state: EpisodeState, messages: list[Any], command: str) -> tuple[str, dict[str, Any]]:
        candidates = self._candidates(state)
        if not (command.lower().startswith("think:") or command in state["admissible"]):
            msg = f"replayed command {command!r} is not admissible at step {len(state.get('turns', []))}"
            raise ValueError(msg)
        chat = self._local(state["route"])
        tokens = len(chat.tokenizer(chat.render(messages), add_special_tokens=False).input_ids)
        return command, {"candidates": candidates, "input_tokens": tokens, "info": {"replayed": True}}

    def _act_by_score(self, state: EpisodeState, messages: list[Any]) -> tuple[str, dict[str, Any]]:
        route = state["route"]
        chat = self._local(route)
        prompt = chat.render(messages)
        candidates = self._candidates(state)
        scored = state.get("scored") or {}
        both = self.config.score_both or len(scored) == 2
        top, bottom = self.ladder.names[0], self.ladder.names[-1]
        routes = list(dict.fromkeys((top, bottom, route) if both else (route,)))
        scores = {}
        for r in routes:
            if r in scored:
                scores[r] = torch.tensor(scored[r], dtype=torch.float64)  # scored for the router already
            else:
                scores[r] = self.scorers[r].score(prompt, candidates, normalize=self.config.normalize)
        chosen = self._penalized(scores[route], route, state)
        action = candidates[int(chosen.argmax())]
        pending: dict[str, Any] = {
            "candidates": candidates,
            "logprobs": {r: [round(float(v), 5) for v in s] for r, s in scores.items()},
            "input_tokens": len(chat.tokenizer(prompt, add_special_tokens=False).input_ids),
        }
        if both:
            pending["kl"] = kl_divergence(action_log_probs(scores[bottom]), action_log_probs(scores[top]))
        return action, pending

    def _penalized(self, scores: torch.Tensor, route: str, state: EpisodeState) -> torch.Tensor:
        """The candidates' scores after the agent's own adjustments (contextual calibration, undo, repeats)."""
        candidates = self._candidates(state)
        chosen = scores.clone()
        recent = [a for a, _ in state.get("turns", [])[-self.config.repeat_window :]]
        if self.config.contextual_calibration:
            chosen -= self.config.contextual_calibration * self._neutral_scores(route, candidates)
        if self.config.undo_penalty and recent:
            undo = inverse_command(recent[-1])
            for i, command in enumerate(candidates):
                if command == undo:
                    chosen[i] -= self.config.undo_penalty
        if self.config.repeat_penalty and recent:
            for i, command in enumerate(candidates):
                chosen[i] -= self.config.repeat_penalty * recent.count(command)
        return chosen

    def _neutral_scores(self, route: str, candidates: list[str]) -> torch.Tensor:
        """Each command's score after a neutral prompt (cached per command: it never changes)."""
        cache = self._neutral.setdefault(route, {})
        missing = [c for c in candidates if c not in cache]
        if missing:
            chat = self._local(route)
            scorer = self._neutral_scorers.get(route)
            if scorer is None:
                scorer = self._neutral_scorers[route] = scorer_for(chat)
            prompt = chat.render(build_messages("You are in a room.", [], config=self.config.prompt))
            for command, value in zip(
                missing, scorer.score(prompt, missing, normalize=self.config.normalize), strict=True
            ):
                cache[command] = float(value)
        return torch.tensor([cache[c] for c in candidates], dtype=torch.float64)

    def _act_by_generation(self, state: EpisodeState, messages: list[Any]) -> tuple[str, dict[str, Any]]:
        step = state["step"]
        admissible = self._candidates(state)
        pending: dict[str, Any] = {"candidates": admissible, "info": {}}
        reply = self._generate(step.model, messages, pending)
        escalation = step.escalation(reply)
        if escalation:
            pending["escalation"] = escalation
            pending["info"]["low_action"] = _command(reply)
            reply = self._generate(step.escalate_to, messages, pending)
        text = _command(reply)
        if not (text.lower().startswith("think:") or text in admissible):
            match = difflib.get_close_matches(text, admissible, n=1, cutoff=self.config.match_cutoff)
            if match:
                pending["info"]["mapped_from"] = text
                text = match[0]
        return text, pending

    def _generate(self, chat: Any, messages: list[Any], pending: dict[str, Any]) -> AIMessage:
        reply = chat.invoke(messages, stop=["\n"], max_tokens=self.config.max_new_tokens)
        usage = reply.usage_metadata or {}
        pending["input_tokens"] = pending.get("input_tokens", 0) + usage.get("input_tokens", 0)
        pending["output_tokens"] = pending.get("output_tokens", 0) + usage.get("output_tokens", 0)
        return reply if isinstance(reply, AIMessage) else AIMessage(content=str(reply.content))

    def _env(self, state: EpisodeState, runtime: Runtime[EpisodeContext]) -> dict[str, Any]:
        env = runtime.context.env
        action = state["action"]
        observation, won, done, info = env.step(action)
        pending = dict(state["pending"])
        escalation = pending.pop("escalation", None)
        step_info = pending.pop("info", {}) or {}
        step_info["valid"] = bool(info.get("valid", True))
        state["step"].finish(None, escalation, action=action, info=step_info, **pending)
        turns = [*state.get("turns", []), (action, observation)]
        done = bool(done or won or len(turns) >= self.config.max_steps)
        return {
            "turns": turns,
            "observation": observation,
            "admissible": list(env.admissible_commands),
            "won": bool(won),
            "done": done,
        }

    # -- episodes ------------------------------------------------------------------------------
    def run_episode(
        self,
        env: Any,
        *,
        conversation_id: str,
        game: Any = None,
        info: dict[str, Any] | None = None,
        replay: Sequence[tuple[str, str]] = (),
    ) -> Episode:
        """Play one episode of ``env``'s game (or of ``game`` on the same env) and return it (also stored).

        ``replay``: ``(command, route)`` pairs played as the first steps without asking the router
        or scoring anything (a recorded prefix, replayed exactly in a deterministic game; the
        steps are recorded with ``info["replayed"]``); the agent takes over after them.
        """
        opening, env_info = env.reset(game) if game is not None else env.reset()
        task = env_info.get("task", "")
        state: EpisodeState = {
            "conversation_id": conversation_id,
            "task": task,
            "opening": opening,
            "turns": [],
            "observation": opening,
            "admissible": list(env_info["admissible_commands"]),
            "won": False,
            "done": False,
            "replay": [(str(command), str(route)) for command, route in replay],
        }
        context = EpisodeContext(env=env, examples=tuple(self.examples(env_info.get("task_type", ""))))
        limit = 3 * self.config.max_steps + 10
        final = self.graph.invoke(state, context=context, config={"recursion_limit": limit})
        episode = self.tracker.end_episode(
            conversation_id,
            success=bool(final.get("won")),
            info={
                "game": env_info.get("name", ""),
                "task_type": env_info.get("task_type", ""),
                "mode": self.config.mode,
                "steps": len(final.get("turns", [])),
                **(info or {}),
            },
        )
        if episode is None:  # pragma: no cover - the graph always records at least one step
            msg = "the episode recorded no steps"
            raise RuntimeError(msg)
        return episode


def _replayed(state: EpisodeState) -> tuple[str, str] | None:
    """The ``(command, route)`` this step replays, or ``None`` when the agent plays it."""
    replay = state.get("replay") or []
    index = len(state.get("turns", []))
    return replay[index] if index < len(replay) else None


def _command(reply: AIMessage) -> str:
    """The command a generated reply names (first line, no trailing period)."""
    return str(reply.content).strip().rstrip(".").strip()
