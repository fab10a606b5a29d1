"""Settings of the ``convkit`` command: flags, then environment variables, then a TOML file.

Each setting is resolved on its own, the first source that gives it winning:

1. a command-line flag (``--model``, ``--base-url``, ``--db``);
2. an environment variable (``CONVKIT_MODEL``, ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``,
   ``CONVKIT_DATABASE_URL``, ``CONVKIT_PLUGINS``);
3. the config file: ``$CONVKIT_CONFIG`` if set, else ``config.toml`` in the user config
   directory (``platformdirs.user_config_dir("convkit")``); a missing file is no error;
4. the built-in default.

The API key has no flag: a flag would put it in the shell history and the process list.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from attrs import frozen

from convkit.cli._errors import CommandError

__all__ = ["CONFIG_ENV", "SETTINGS", "Config", "Setting", "config_path", "load_config", "mask"]

#: Environment variable naming the config file (overrides the user config directory).
CONFIG_ENV = "CONVKIT_CONFIG"

DEFAULT_MODEL = "gpt-4o-mini"


@frozen
class Setting:
    """One setting: its config-file key, environment variable, flag, default and secrecy."""

    key: str
    env: str | None
    flag: str | None
    default: Any
    secret: bool = False
    help: str = ""


#: Every setting, in the order ``convkit config show`` prints them.
SETTINGS: tuple[Setting, ...] = (
    Setting("model", "CONVKIT_MODEL", "--model", DEFAULT_MODEL, help="the model to talk to"),
    Setting(
        "base_url",
        "OPENAI_BASE_URL",
        "--base-url",
        "https://api.openai.com/v1",
        help="the OpenAI-compatible endpoint",
    ),
    Setting("api_key", "OPENAI_API_KEY", None, None, secret=True, help="the endpoint's API key"),
    Setting(
        "database_url",
        "CONVKIT_DATABASE_URL",
        "--db",
        None,
        help="SQLAlchemy URL of the store (default: SQLite in the user data directory)",
    ),
    Setting(
        "plugins",
        "CONVKIT_PLUGINS",
        None,
        None,
        help="entry-point plugins to load (comma-separated; unset: all installed)",
    ),
    Setting("system", None, "--system", None, help="the chat's system prompt (section [chat])"),
)

_BY_KEY = {s.key: s for s in SETTINGS}
# Keys of the file: top level, plus [chat] system.
_TOP_KEYS = {"model", "base_url", "api_key", "database_url", "plugins"}
_CHAT_KEYS = {"system"}


def config_path() -> Path:
    """The config file's path: ``$CONVKIT_CONFIG``, else ``config.toml`` in the config dir."""
    given = os.environ.get(CONFIG_ENV)
    if given:
        return Path(given).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("convkit")) / "config.toml"


def _toml() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    import tomli  # type: ignore[import-not-found, unused-ignore]  # pragma: no cover

    return tomli  # pragma: no cover


def _check_file(data: Mapping[str, Any], path: Path) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key == "chat" and isinstance(value, Mapping):
            for sub, subvalue in value.items():
                if sub not in _CHAT_KEYS:
                    raise CommandError(f"{path}: unknown setting [chat] {sub!r}")
                flat[sub] = subvalue
            continue
        if key not in _TOP_KEYS:
            known = ", ".join(sorted(_TOP_KEYS | {"[chat] system"}))
            raise CommandError(f"{path}: unknown setting {key!r} (known: {known})")
        flat[key] = value
    for key, value in flat.items():
        if key == "plugins":
            if isinstance(value, str):
                value = [p.strip() for p in value.split(",") if p.strip()]
            if not (isinstance(value, list) and all(isinstance(p, str) for p in value)):
                raise CommandError(f"{path}: plugins must be a list of names")
            flat[key] = tuple(value)
        elif not isinstance(value, str):
            raise CommandError(f"{path}: {key} must be text, got {type(value).__name__}")
    return flat


def load_config(path: Path | None = None) -> dict[str, Any]:
    """Read the config file (``{}`` when there is none); one clear error when it is invalid."""
    path = path or config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CommandError(f"cannot read the config file {path}: {exc.strerror}") from None
    toml = _toml()
    try:
        data = toml.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise CommandError(f"{path}: not UTF-8 text") from None
    except toml.TOMLDecodeError as exc:
        raise CommandError(f"{path}: invalid TOML: {exc}") from None
    return _check_file(data, path)


def mask(key: str, value: Any) -> Any:
    """``value`` as it may be shown: secrets hidden, database passwords masked."""
    if value is None:
        return None
    setting = _BY_KEY.get(key)
    if setting is not None and setting.secret:
        return "********" if value else ""
    if key == "database_url":
        return display_database_url(str(value))
    if isinstance(value, tuple):
        return list(value)
    return value


def display_database_url(url: str) -> str:
    """A database URL with its password masked, in ``user:pw@`` and in the query string."""
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception:
        return "(an unparsable URL)"
    from convkit.store._engine import display_url  # the store's own rule: one rule, no drift

    return display_url(parsed)


@frozen
class Config:
    """The resolved settings of one run, and where each came from.

    ``values[key]`` is the value (None: unset), ``sources[key]`` one of ``"flag"``,
    ``"env NAME"``, ``"config file"`` or ``"default"``.
    """

    values: Mapping[str, Any]
    sources: Mapping[str, str]
    path: Path

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def secrets(self) -> list[str]:
        """Secret values of this run (to scrub from any text the command prints)."""
        found = [str(self.values["api_key"])] if self.values.get("api_key") else []
        db = self.values.get("database_url")
        if db:
            try:
                from sqlalchemy.engine import make_url

                password = make_url(str(db)).password
            except Exception:
                password = None
            if password:
                found.append(str(password))
        return [s for s in found if len(s) >= 4]


def resolve(flags: Mapping[str, Any], file: Mapping[str, Any] | None = None) -> Config:
    """Resolve every setting from ``flags`` (None: not given), the environment and the file."""
    path = config_path()
    file = load_config(path) if file is None else file
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for s in SETTINGS:
        flag = flags.get(s.key)
        env = os.environ.get(s.env) if s.env else None
        if flag is not None:
            values[s.key], sources[s.key] = flag, "flag"
        elif env is not None and (env != "" or s.key == "plugins"):
            value: Any = env
            if s.key == "plugins":
                value = tuple(p.strip() for p in env.split(",") if p.strip())
            values[s.key], sources[s.key] = value, f"env {s.env}"
        elif s.key in file:
            values[s.key], sources[s.key] = file[s.key], "config file"
        else:
            values[s.key], sources[s.key] = s.default, "default"
    return Config(values=values, sources=sources, path=path)


def plugin_allowlist() -> Sequence[str] | None:
    """The plugins the config file names, when ``CONVKIT_PLUGINS`` does not decide (or None).

    Read before the parser is built (plugins add subcommands); a broken file is ignored here
    and reported by the command that reads it.
    """
    if os.environ.get("CONVKIT_PLUGINS") is not None:
        return None
    try:
        plugins = load_config().get("plugins")
    except CommandError:
        return None
    return None if plugins is None else tuple(plugins)
