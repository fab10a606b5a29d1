"""Plugin subcommands for ``convkit``, and the plugin modules stay light to import."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from convkit import cli
from convkit.hookspecs import hookimpl


class Hello:
    @hookimpl
    def register_commands(self, cli: Any) -> None:
        hello = cli.add_parser("hello", help="say hello")
        hello.add_argument("--name", default="world")
        hello.set_defaults(handler=self.run)

    def run(self, args: argparse.Namespace) -> int:
        print(f"hello {args.name}")
        return 3


class Broken:
    @hookimpl
    def register_commands(self, cli: Any) -> None:
        raise RuntimeError("cannot add my command")


def test_a_plugin_adds_a_subcommand(
    register_plugin: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    register_plugin(Hello(), name="hello-plugin")
    assert cli.main(["hello", "--name", "ann"]) == 3
    assert capsys.readouterr().out == "hello ann\n"


def test_a_plugin_failing_to_add_its_command_is_reported_and_the_rest_work(
    register_plugin: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    register_plugin(Broken(), name="broken-cli")
    register_plugin(Hello(), name="hello-plugin")
    assert cli.main(["hello"]) == 3
    captured = capsys.readouterr()
    assert captured.out == "hello world\n"
    assert (
        "convkit: warning: plugin 'broken-cli' failed in hook 'register_commands': "
        "RuntimeError: cannot add my command"
    ) in captured.err


def test_the_plugin_modules_do_not_import_httpx_or_sqlalchemy() -> None:
    code = (
        "import sys, convkit.hookspecs, convkit.plugins, convkit.testing.plugins\n"
        "heavy = [m for m in ('httpx', 'sqlalchemy', 'alembic', 'tiktoken') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
