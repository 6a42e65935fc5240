"""The core CLI finds integration subcommands through the ``precision_router.commands`` entry points."""

from __future__ import annotations

import argparse
from importlib.metadata import EntryPoint

import pytest

from precision_router import cli

HELLO = cli.Command(
    "say hello",
    lambda parser: parser.add_argument("--name", default="world"),
    lambda args: print(f"hello {args.name}") or 0,
)
NOT_A_COMMAND = object()


def _entry_points(*entries: tuple[str, str]):
    points = [EntryPoint(name, value, cli.ENTRY_POINT_GROUP) for name, value in entries]

    def fake(*, group: str):
        assert group == cli.ENTRY_POINT_GROUP
        return points

    return fake


def test_plugin_commands_join_the_parser_and_run(monkeypatch, capsys):
    monkeypatch.setattr(
        "importlib.metadata.entry_points",
        _entry_points(
            ("hello", f"{__name__}:HELLO"),
            ("broken", "no_such_module_here:X"),
            ("odd", f"{__name__}:NOT_A_COMMAND"),
            ("models", f"{__name__}:HELLO"),  # never shadows a built-in
        ),
    )
    commands = cli.all_commands()
    assert commands["hello"] is HELLO and "broken" not in commands and "odd" not in commands
    assert commands["models"] is cli.COMMANDS["models"]
    assert cli.main(["hello", "--name", "router"]) == 0
    assert capsys.readouterr().out == "hello router\n"


def test_installed_integration_registers_its_commands():
    pytest.importorskip("precision_router_alfworld")
    commands = cli.all_commands()
    assert {"alfworld", "eval", "collect-kl", "collect-counterfactual", "train-grpo"} <= set(commands)
    parser = cli.build_parser(commands)
    args = parser.parse_args(["eval", "--tiny", "--policies", "high", "low"])
    assert isinstance(args, argparse.Namespace) and args.policies == ["high", "low"]


def test_core_cli_never_imports_an_integration():
    import subprocess
    import sys

    code = (
        "import sys; from precision_router import cli; cli.COMMANDS; "
        "assert not [m for m in sys.modules if m.startswith('precision_router_alfworld')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
