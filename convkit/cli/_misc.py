"""``convkit plugins`` and ``convkit config path|show``."""

from __future__ import annotations

import argparse
from typing import Any

from convkit.cli import settings
from convkit.cli._config import SETTINGS, mask
from convkit.cli._ui import print_json

__all__ = ["register_config", "register_plugins"]


def _plugins(args: argparse.Namespace) -> int:
    from convkit.plugins import plugin_info

    infos = plugin_info()
    if args.json:
        rows = [
            {
                "name": i.name,
                "status": i.status,
                "source": i.source,
                "distribution": i.distribution,
                "version": i.version,
                "module": i.module,
                "hooks": list(i.hooks),
                "error": i.error,
            }
            for i in infos
        ]
        print_json(rows)
    elif not infos:
        print("no plugins loaded")
    for info in [] if args.json else infos:
        origin = info.source
        if info.distribution:
            origin += f", {info.distribution} {info.version}"
        if info.module:
            origin += f", {info.module}"
        if info.status == "loaded":
            print(f"{info.name} ({origin})")
            print(f"  hooks: {', '.join(info.hooks) or '(none)'}")
        else:
            print(f"{info.name} ({origin}): {info.status}: {info.error}")
    return 1 if any(i.status == "failed" for i in infos) else 0


def register_plugins(subparsers: Any) -> None:
    """Add ``convkit plugins``."""
    plugins = subparsers.add_parser(
        "plugins",
        help="list the plugins: where each comes from, its version, the hooks it implements "
        "(exit 1 if one failed to load)",
    )
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.set_defaults(handler=_plugins)


def _config_path(args: argparse.Namespace) -> int:
    from convkit.cli._config import config_path

    path = config_path()
    print(path)
    return 0


def _config_show(args: argparse.Namespace) -> int:
    config = settings(args)
    rows = [
        {
            "key": s.key,
            "value": mask(s.key, config[s.key]),
            "source": config.sources[s.key],
            "env": s.env,
        }
        for s in SETTINGS
    ]
    if args.json:
        print_json(
            {
                "path": str(config.path),
                "exists": config.path.exists(),
                "settings": {r["key"]: {"value": r["value"], "source": r["source"]} for r in rows},
            }
        )
        return 0
    state = "" if config.path.exists() else " (not present)"
    print(f"config file: {config.path}{state}")
    for r in rows:
        value = r["value"]
        shown = (
            "(unset)" if value is None else ", ".join(value) if isinstance(value, list) else value
        )
        print(f"{r['key']:<13} {shown}  [{r['source']}]")
    return 0


def register_config(subparsers: Any) -> None:
    """Add ``convkit config``."""
    config = subparsers.add_parser(
        "config", help="where the config file is, and the settings in force (secrets masked)"
    )
    actions = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    path = actions.add_parser("path", help="print the config file's path")
    path.set_defaults(handler=_config_path)
    show = actions.add_parser("show", help="every setting, its value and where it came from")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=_config_show)
