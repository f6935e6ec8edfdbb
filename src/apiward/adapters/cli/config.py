"""``apiward config``: check the configuration without starting, show what is in effect."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import typer

from apiward.adapters.cli.shared import JsonOption

app = typer.Typer(help="Check and show the configuration.", no_args_is_help=True)


@app.command("check")
def check() -> None:
    """Validate the settings (environment and APIWARD_CONFIG_FILE) without starting.

    Exit status 0 when they can be used (unknown APIWARD_* variables are warned about),
    2 with one line per problem otherwise."""
    from apiward.adapters.settings import Settings, unknown_variables

    Settings()  # a ConfigError is printed by main, one line per problem
    for line in unknown_variables(os.environ):
        print(f"warning: {line}", file=sys.stderr)
    source = os.environ.get("APIWARD_CONFIG_FILE")
    print(f"Configuration OK{f' ({source} and the environment)' if source else ''}.")


@app.command("show")
def show(as_json: JsonOption = False) -> None:
    """Every setting in effect, and where it comes from: default, file or environment.
    Secrets are masked."""
    from apiward.adapters.settings import Settings, origin, shown, variable

    settings = Settings()
    rows: list[dict[str, Any]] = []
    for name in Settings.model_fields:
        value = getattr(settings, name)
        plain = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
        if isinstance(value, list):
            plain = [v.model_dump(mode="json") if hasattr(v, "model_dump") else v for v in value]
        elif isinstance(value, dict):
            plain = {
                k: v.model_dump(mode="json") if hasattr(v, "model_dump") else v
                for k, v in value.items()
            }
        text = shown(name, plain)
        rows.append(
            {"name": name, "variable": variable(name), "value": text, "source": origin(name)}
        )
    if as_json:
        print(json.dumps(rows))
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['source']:<11}  {r['value']}")
