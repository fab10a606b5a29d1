"""Loading plugins from entry points: allowlist, failures reported by name, models, tracing."""

from __future__ import annotations

import logging
import sys
from types import ModuleType

import pytest

from convkit import cli, models
from convkit.hookspecs import CallContext, RequestDraft
from tests.plugins.conftest import FakeDist

PREPARE = """
from convkit.hookspecs import hookimpl

@hookimpl
def prepare_request(draft):
    draft.params["seen_by_{name}"] = True
"""


def _prepare(name: str) -> str:
    return PREPARE.replace("{name}", name)


def _draft_after(plugins: ModuleType) -> RequestDraft:
    draft = RequestDraft(model="m")
    plugins.PluginHost().first_answer(
        "prepare_request", draft=draft, context=CallContext(thread_id=None, model="m")
    )
    return draft


def test_entry_point_plugin_is_loaded_with_its_distribution(
    fake_dist: FakeDist, fresh_plugins: ModuleType
) -> None:
    modules = fake_dist("convkit-alpha", "1.2.3", {"alpha": _prepare("alpha")})
    fresh_plugins.load_plugins()
    assert fresh_plugins.pm.has_plugin("alpha")
    assert _draft_after(fresh_plugins).params == {"seen_by_alpha": True}
    (info,) = fresh_plugins.plugin_info()
    assert (info.name, info.status, info.source) == ("alpha", "loaded", "entry point")
    assert (info.distribution, info.version, info.module) == (
        "convkit-alpha",
        "1.2.3",
        modules["alpha"],
    )
    assert info.hooks == ("prepare_request",)


def test_load_plugins_is_idempotent(fake_dist: FakeDist, fresh_plugins: ModuleType) -> None:
    fake_dist("convkit-a", "1", {"a": _prepare("a")})
    fresh_plugins.load_plugins()
    fake_dist("convkit-b", "1", {"b": _prepare("b")})
    fresh_plugins.load_plugins()  # already loaded: the new distribution is not looked at
    assert [name for name, _ in fresh_plugins.pm.list_name_plugin()] == ["a"]


def test_allowlist_loads_only_the_listed_plugins_and_never_imports_the_others(
    fake_dist: FakeDist, fresh_plugins: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = 'raise RuntimeError("an excluded plugin must never be imported")\n'
    modules = fake_dist("convkit-mixed", "0.1", {"wanted": _prepare("wanted"), "unwanted": bomb})
    monkeypatch.setenv("CONVKIT_PLUGINS", " wanted , ")
    fresh_plugins.load_plugins()
    assert fresh_plugins.pm.has_plugin("wanted")
    assert not fresh_plugins.pm.has_plugin("unwanted")
    assert modules["unwanted"] not in sys.modules
    statuses = {i.name: (i.status, i.error) for i in fresh_plugins.plugin_info()}
    assert statuses["unwanted"] == ("excluded", "not listed in CONVKIT_PLUGINS")
    assert statuses["wanted"] == ("loaded", None)


def test_empty_allowlist_loads_none(
    fake_dist: FakeDist, fresh_plugins: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    modules = fake_dist("convkit-a", "1", {"a": _prepare("a")})
    monkeypatch.setenv("CONVKIT_PLUGINS", "")
    fresh_plugins.load_plugins()
    assert fresh_plugins.pm.list_name_plugin() == []
    assert modules["a"] not in sys.modules


def test_only_argument_loads_none_at_all_whatever_the_environment(
    fake_dist: FakeDist, fresh_plugins: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    modules = fake_dist("convkit-a", "1", {"a": _prepare("a")})
    monkeypatch.setenv("CONVKIT_PLUGINS", "a")
    fresh_plugins.load_plugins(only=())
    assert fresh_plugins.pm.list_name_plugin() == []
    assert modules["a"] not in sys.modules
    assert _draft_after(fresh_plugins).params == {}


def test_a_plugin_that_fails_to_import_is_reported_by_name_and_the_rest_load(
    fake_dist: FakeDist,
    fresh_plugins: ModuleType,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    broken = "import convkit_dependency_that_is_not_installed\n"
    fake_dist("convkit-set", "2.0", {"broken": broken, "good": _prepare("good")})
    with caplog.at_level(logging.WARNING, logger="convkit.plugins"):
        fresh_plugins.load_plugins()
    assert fresh_plugins.pm.has_plugin("good")
    assert not fresh_plugins.pm.has_plugin("broken")
    (record,) = caplog.records
    assert "'broken'" in record.getMessage() and "convkit-set 2.0" in record.getMessage()
    assert "ModuleNotFoundError" in record.getMessage()
    assert record.exc_info is None  # a line, not a traceback
    failed = [i for i in fresh_plugins.plugin_info() if i.status == "failed"]
    assert [(i.name, i.distribution, i.version) for i in failed] == [
        ("broken", "convkit-set", "2.0")
    ]
    assert failed[0].error == (
        "ModuleNotFoundError: No module named 'convkit_dependency_that_is_not_installed'"
    )
    capsys.readouterr()
    assert cli.main(["plugins"]) == 1
    out = capsys.readouterr().out
    assert "broken (entry point, convkit-set 2.0" in out and "failed: ModuleNotFoundError" in out
    assert "good (entry point, convkit-set 2.0" in out and "hooks: prepare_request" in out


def test_entry_points_are_skipped_while_convkit_tests_run(
    fake_dist: FakeDist, fresh_plugins: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    modules = fake_dist("convkit-a", "1", {"a": _prepare("a")})
    monkeypatch.setattr(sys, "_called_from_test", True, raising=False)
    fresh_plugins.load_plugins()
    assert fresh_plugins.pm.list_name_plugin() == []
    assert modules["a"] not in sys.modules


REGISTERS_MODELS = """
from convkit.hookspecs import hookimpl
from convkit.models import ModelInfo

CALLS = []

@hookimpl
def register_models(register):
    CALLS.append(1)
    register(ModelInfo(name="{model}", context_window=12_345, max_output_tokens=678,
                       encoding="cl100k_base", exact=False, safety_margin=0.1))
"""


def test_register_models_runs_once_for_what_loaded(
    fake_dist: FakeDist, fresh_plugins: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models, "registry", models.ModelRegistry(list(models.registry)))
    modules = fake_dist(
        "convkit-models", "1", {"acme": REGISTERS_MODELS.replace("{model}", "acme-70b-test")}
    )
    fresh_plugins.load_plugins()
    fresh_plugins.PluginHost()
    fresh_plugins.PluginHost()
    assert sys.modules[modules["acme"]].CALLS == [1]
    info = models.get("acme-70b-test")
    assert (info.context_window, info.max_output_tokens, info.encoding) == (
        12_345,
        678,
        "cl100k_base",
    )


def test_a_plugin_whose_register_models_raises_is_reported_and_not_loaded(
    fake_dist: FakeDist, fresh_plugins: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    source = (
        "from convkit.hookspecs import hookimpl\n"
        "@hookimpl\n"
        "def register_models(register):\n"
        "    register('not a ModelInfo')\n"
    )
    fake_dist("convkit-bad-models", "1", {"badmodels": source, "good": _prepare("good")})
    with caplog.at_level(logging.WARNING, logger="convkit.plugins"):
        fresh_plugins.load_plugins()
    assert not fresh_plugins.pm.has_plugin("badmodels") and fresh_plugins.pm.has_plugin("good")
    (failed,) = [i for i in fresh_plugins.plugin_info() if i.status == "failed"]
    assert failed.name == "badmodels"
    assert failed.error == (
        "PluginError: plugin 'badmodels' failed in hook 'register_models': "
        "TypeError: register() takes a ModelInfo, got str"
    )


def test_a_name_taken_by_another_distribution_is_reported(
    fake_dist: FakeDist, fresh_plugins: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    fake_dist("convkit-first", "1", {"same": _prepare("first")})
    fake_dist("convkit-second", "1", {"same": _prepare("second")})
    with caplog.at_level(logging.WARNING, logger="convkit.plugins"):
        fresh_plugins.load_plugins()
    assert len(fresh_plugins.pm.list_name_plugin()) == 1
    assert "'same'" in caplog.records[0].getMessage()
    assert "the name is taken" in caplog.records[0].getMessage()


def test_trace_env_var_prints_every_hook_call(
    fake_dist: FakeDist,
    fresh_plugins: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_dist("convkit-a", "1", {"a": _prepare("a")})
    monkeypatch.setenv("CONVKIT_TRACE_PLUGINS", "1")
    fresh_plugins.load_plugins()
    _draft_after(fresh_plugins)
    fresh_plugins.pm.hook.register_commands(cli=None)
    err = capsys.readouterr().err
    assert "convkit: hook prepare_request(a)" in err
    assert "convkit: hook prepare_request -> None" in err
    assert "convkit: hook register_commands(no plugins)" in err


def test_cli_lists_plugins_as_json(
    fresh_plugins: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    class Observer:
        from convkit.hookspecs import hookimpl

        @hookimpl
        def window_fitted(self, window: object) -> None:
            return None

        @hookimpl(tryfirst=True)
        def prepare_request(self, draft: object) -> None:
            return None

    fresh_plugins.register_plugin(Observer(), name="observer")
    assert cli.main(["plugins", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "observer" and row["source"] == "registered in code"
    assert row["hooks"] == ["prepare_request", "window_fitted"]  # in hookspecs order
    assert row["module"] == __name__
