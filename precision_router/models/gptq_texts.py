"""The texts GPTQ quantizes on by default: short chat-formatted conversations from agent-like domains.

(GPTQ calls them its calibration set; in this package "calibration" means setting a router's
threshold to a target share, so these are the GPTQ texts.)
"""

from __future__ import annotations

import itertools
import random
from typing import Any

__all__ = ["default_calibration_texts", "default_gptq_texts"]

_USER_TURNS = [
    "Put a clean mug on the coffee machine.",
    "Find two keychains and put them in the safe.",
    "Heat an egg and place it on the dining table.",
    "Look at the alarm clock under the desk lamp.",
    "What is the weather like in Paris today?",
    "Add 17 and 25, then multiply the result by 3.",
    "Summarise the following note: the meeting moved to Thursday at ten.",
    "Write a Python function that reverses a list.",
    "Which of these is a fruit: carrot, apple, potato?",
    "Translate 'good morning' into French and Spanish.",
    "Book a table for two at seven o'clock.",
    "Explain in one sentence why the sky is blue.",
    "Cool a tomato in the fridge and put it in the microwave.",
    "Search the drawers for a pen and bring it to the shelf.",
    "List three uses of a paperclip.",
    "Convert 5 kilometres into miles.",
]

_ASSISTANT_TURNS = [
    "Think: I need to find the object first. It is probably in a cabinet or on a countertop.",
    "Action: go to countertop 1",
    "Observation: On the countertop 1, you see a mug 1, a knife 2, and a bread 1.",
    "Action: take mug 1 from countertop 1\nObservation: You pick up the mug 1 from the countertop 1.",
    "Action: open fridge 1\nObservation: You open the fridge 1. The fridge 1 is open. In it, you see an apple 3.",
    "Action: move tomato 1 to microwave 1\nObservation: You move the tomato 1 to the microwave 1.",
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    '<tool_call>\n{"name": "add", "arguments": {"a": 17, "b": 25}}\n</tool_call>',
    "The result is 126: 17 plus 25 is 42, and 42 times 3 is 126.",
    "def reverse(items):\n    return items[::-1]",
    "An apple is a fruit; carrots and potatoes are vegetables.",
    "Good morning is 'bonjour' in French and 'buenos dias' in Spanish.",
    "Sunlight scatters off air molecules, and blue light scatters the most.",
    "Five kilometres are about 3.1 miles.",
    "Think: the pen might be in one of the drawers. I will check drawer 1 first.",
    "A paperclip can hold papers, reset a device, or serve as a small hook.",
]

_SYSTEM = [
    "You are a helpful assistant.",
    "You are an agent in a household. Interact with the environment to solve the task.",
    "You can call functions to answer the user.",
]


def default_gptq_texts(tokenizer: Any = None, n: int = 64, seed: int = 0) -> list[str]:
    """``n`` short conversations rendered with ``tokenizer``'s chat template (plain text without one)."""
    rng = random.Random(seed)
    combos = list(itertools.product(range(len(_SYSTEM)), range(len(_USER_TURNS))))
    rng.shuffle(combos)
    texts = []
    for i in range(n):
        system, user = combos[i % len(combos)]
        replies = rng.sample(_ASSISTANT_TURNS, k=3)
        turns = [
            {"role": "system", "content": _SYSTEM[system]},
            {"role": "user", "content": _USER_TURNS[user]},
            {"role": "assistant", "content": "\n".join(replies)},
        ]
        if tokenizer is not None and getattr(tokenizer, "chat_template", None):
            texts.append(str(tokenizer.apply_chat_template(turns, tokenize=False)))
        else:
            texts.append("\n".join(t["content"] for t in turns))
    return texts


default_calibration_texts = default_gptq_texts
"""Former name of :func:`default_gptq_texts`."""
