import functools

import torch
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_tests.unit_tests import ChatModelUnitTests
from pydantic import BaseModel

from precision_router.models.local import LocalChatModel
from precision_router.models.tools import parse_tool_calls, tools_system_prompt
from precision_router.testing import tiny_causal_lm, tiny_tokenizer


@functools.lru_cache(maxsize=1)
def _tiny():
    tokenizer = tiny_tokenizer()
    return tiny_causal_lm(tokenizer), tokenizer


class TestLocalChatModelStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self):
        return LocalChatModel

    @property
    def chat_model_params(self):
        model, tokenizer = _tiny()
        return {"hf_model": model, "tokenizer": tokenizer, "model": "tiny"}

    @property
    def has_tool_calling(self):
        return True

    @property
    def has_structured_output(self):
        return True


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def test_generation_is_deterministic_and_reports_usage(tiny_pair):
    high, _ = tiny_pair
    first = high.invoke("Hello there")
    second = high.invoke("Hello there")
    assert first.content == second.content
    prompt_ids = high.tokenizer(high.render([HumanMessage("Hello there")]), add_special_tokens=False).input_ids
    assert first.usage_metadata["input_tokens"] == len(prompt_ids)
    assert 0 < first.usage_metadata["output_tokens"] <= 12
    assert first.response_metadata["model_name"] == "tiny@fp32"


def test_stream_matches_invoke_and_ends_with_last_chunk(tiny_pair):
    high, _ = tiny_pair
    chunks = list(high.stream("Hello there"))
    assert chunks[-1].chunk_position == "last"
    assert "".join(c.content for c in chunks) == high.invoke("Hello there").content
    assert chunks[-1].usage_metadata["output_tokens"] > 0


def test_stop_strings_and_max_tokens(tiny_pair):
    high, _ = tiny_pair
    full = high.invoke("Hello there", max_tokens=12).content
    assert len(full) > 3
    cut_at = full[2:4]
    stopped = high.invoke("Hello there", stop=[cut_at]).content
    assert stopped == full[: full.find(cut_at)]
    streamed = "".join(c.content for c in high.stream("Hello there", stop=[cut_at]))
    assert streamed == stopped
    short = high.invoke("Hello there", max_tokens=2)
    assert short.usage_metadata["output_tokens"] == 2
    assert short.response_metadata["finish_reason"] == "length"


def test_sampling_uses_temperature_and_seed(tiny_pair):
    high, _ = tiny_pair
    a = high.invoke("Hello", temperature=1.5, seed=1, max_tokens=10).content
    b = high.invoke("Hello", temperature=1.5, seed=1, max_tokens=10).content
    outputs = {high.invoke("Hello", temperature=1.5, seed=s, max_tokens=10).content for s in range(5)}
    assert a == b
    assert len(outputs) > 1


def test_hermes_tools_are_rendered_and_tool_turns_replayed(tiny_pair):
    high, _ = tiny_pair
    from langchain_core.utils.function_calling import convert_to_openai_tool

    tools = [convert_to_openai_tool(add)]
    history = [
        SystemMessage("Be brief."),
        HumanMessage("What is 2+3?"),
        AIMessage("", tool_calls=[{"name": "add", "args": {"a": 2, "b": 3}, "id": "c1"}]),
        ToolMessage("5", tool_call_id="c1"),
    ]
    prompt = high.render(history, tools, tool_choice="any")
    assert prompt.startswith("<|im_start|>system\nBe brief.\n\nYou may call functions")
    assert '"name": "add"' in prompt and "You must call at least one function." in prompt
    assert '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>' in prompt
    assert "<|im_start|>user\n<tool_response>\n5\n</tool_response><|im_end|>" in prompt
    assert prompt.endswith('<|im_start|>assistant\n<tool_call>\n{"name": "')


def test_forced_tool_choice_produces_a_tool_call_or_invalid_call(tiny_pair):
    high, _ = tiny_pair
    bound = high.bind_tools([add], tool_choice="add")
    reply = bound.invoke("add 2 and 3", max_tokens=6)
    # a random tiny model writes garbage arguments: the call must surface, valid or invalid
    assert reply.tool_calls or reply.invalid_tool_calls
    named = (reply.tool_calls or reply.invalid_tool_calls)[0]["name"]
    assert named == "add"


def test_parse_tool_calls():
    text = (
        'Sure.\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>\n'
        '<tool_call>{"name": "x", "arguments": "{\\"k\\": 1}"}</tool_call>'
        '<tool_call>{"name": "bad", "arguments": [1]}</tool_call><tool_call>{nope'
    )
    content, calls, invalid = parse_tool_calls(text)
    assert content == "Sure."
    assert [(c["name"], c["args"]) for c in calls] == [("add", {"a": 1, "b": 2}), ("x", {"k": 1})]
    assert [i["name"] for i in invalid] == ["bad", None]
    # small-model slips: a missing closing brace, or chatter after a complete call
    assert parse_tool_calls('<tool_call>{"name": "f", "arguments": {"a": 1}')[1][0]["args"] == {"a": 1}
    assert parse_tool_calls('<tool_call>{"name": "f", "arguments": {}} and more')[1][0]["name"] == "f"
    assert "arguments" in invalid[0]["error"]
    assert parse_tool_calls("plain answer") == ("plain answer", [], [])


def test_template_with_native_tools_gets_the_schemas(tiny_pair):
    high, _ = tiny_pair
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = (
        "{% if tools %}TOOLS:{{ tools | length }}\n{% endif %}"
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    native = LocalChatModel(hf_model=high.hf_model, tokenizer=tokenizer)
    from langchain_core.utils.function_calling import convert_to_openai_tool

    prompt = native.render([HumanMessage("hi")], [convert_to_openai_tool(add)])
    assert prompt.startswith("TOOLS:1\nuser: hi")
    assert "You may call functions" not in prompt


def test_with_structured_output_parses_a_forced_call(monkeypatch, tiny_pair):
    high, _ = tiny_pair

    class Person(BaseModel):
        name: str
        age: int

    def fake_decode(self, prompt, stops, state, **kw):
        # guided: the one tool's name is forced and its first (string) argument opened
        assert prompt.endswith('<tool_call>\n{"name": "Person", "arguments": {"name": "')
        assert "</tool_call>" in stops
        state.output_tokens = 3
        yield 'Ada", "age": 36}}'

    monkeypatch.setattr(LocalChatModel, "_decode", fake_decode)
    result = high.with_structured_output(Person).invoke("Ada is 36.")
    assert result == Person(name="Ada", age=36)


def test_guided_call_picks_the_likeliest_tool_name(monkeypatch, tiny_pair):
    high, _ = tiny_pair
    from precision_router.models import scoring

    def prefer_add(self, prompt, candidates, **kw):
        assert prompt.endswith('<tool_call>\n{"name": "')
        assert candidates == ['get_weather"', 'add"']
        return torch.tensor([-5.0, -1.0], dtype=torch.float64)

    monkeypatch.setattr(scoring.ActionScorer, "score", prefer_add)
    seen = {}

    def fake_decode(self, prompt, stops, state, **kw):
        seen["prompt"] = prompt
        yield '2, "b": 3, "type": "integer"}}'

    monkeypatch.setattr(LocalChatModel, "_decode", fake_decode)

    def get_weather(city: str) -> str:
        """Weather in a city."""
        return city

    reply = high.bind_tools([get_weather, add], tool_choice="any").invoke("2+3?")
    assert seen["prompt"].endswith('{"name": "add", "arguments": {"a": ')
    # the undeclared "type" key a small model copied from the schema is dropped
    assert reply.tool_calls[0]["name"] == "add" and reply.tool_calls[0]["args"] == {"a": 2, "b": 3}


def test_tool_system_prompt_mentions_required_tool():
    from langchain_core.utils.function_calling import convert_to_openai_tool

    text = tools_system_prompt([convert_to_openai_tool(add)], "add")
    assert "You must call the function add." in text


def test_lazy_loading_from_a_folder(tmp_path):
    model, tokenizer = _tiny()
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    lazy = LocalChatModel(model_path=str(tmp_path / "m"), max_tokens=3)
    assert lazy.hf_model is None
    reply = lazy.invoke("hi")
    assert reply.usage_metadata["output_tokens"] <= 3
    assert torch.equal(lazy.hf_model.lm_head.weight, model.lm_head.weight)


async def test_async_stream_matches_invoke(tiny_pair):
    high, _ = tiny_pair
    chunks = [c async for c in high.astream("Hello there")]
    assert "".join(c.content for c in chunks) == high.invoke("Hello there").content
    assert (await high.ainvoke("Hello there")).content == high.invoke("Hello there").content


def test_a_call_cut_short_keeps_its_complete_arguments():
    cut = '<tool_call>\n{"name": "greet", "arguments": {"style": "Pirate", "properties": {"style": {"type": "str'
    _, calls, invalid = parse_tool_calls(cut)
    assert not invalid and calls[0]["args"] == {"style": "Pirate"}
    _, calls, _ = parse_tool_calls('<tool_call>{"name": "greet", "arguments": {"style": "Pir')
    assert calls[0]["args"] == {"style": "Pir"}
