"""Options every command shares (`--set`, `--config`, `--env`, `--verbose`) and the config they build."""

from pathlib import Path
from typing import Annotated

import typer

from aimespec.core.config import AimeConfig, ConfigRequest, parse_overrides
from aimespec.core.errors import ConfigError

SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a config key: KEY=VALUE (repeatable).", metavar="KEY=VALUE")
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="A TOML or JSON file of config keys.", metavar="FILE")
]
EnvOpt = Annotated[
    str | None, typer.Option("--env", help="A dm_control task DOMAIN-TASK: binds action_dim to its action_spec().")
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks for errors.")]
MaxMemoryOpt = Annotated[float | None, typer.Option(
    "--max-memory", metavar="GIB", help="Cap on the memory of the worker process that runs the model "
                                         "(default: 3/4 of this machine's).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else.")]


def load_config(config: Path | None, sets: list[str] | None, env: str | None) -> AimeConfig:
    """Defaults, then --config, then --env's action_dim, then each --set."""
    return config_request(config, sets, env).build(AimeConfig)


def config_request(config: Path | None, sets: list[str] | None, env: str | None) -> ConfigRequest:
    """The config options as a request: a command that loads a model file builds it with the file's config class."""
    fixed: tuple[tuple[str, int], ...] = ()
    if env is not None:  # `--env ''` is a bad task name, not no task
        from aimespec.data import action_dim_for

        action_dim = action_dim_for(env)
        fixed = (("action_dim", action_dim),)
        overrides = parse_overrides(sets or [])
        if "action_dim" in overrides and str(action_dim) != overrides["action_dim"].strip():
            raise ConfigError("action_dim", f"--set action_dim={overrides['action_dim']} contradicts --env {env}, "
                                            f"whose action_spec() has {action_dim} actions: drop one of them")
    request = ConfigRequest(config, tuple(sets or ()), fixed)
    request.build(AimeConfig, lenient=True)  # a bad file or value is reported before any model code runs
    return request
