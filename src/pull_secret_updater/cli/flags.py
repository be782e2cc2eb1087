"""Settings on the command line: one flag per field, and the environment underneath.

`build_parser` makes one flag of each `Settings` field (`secret_names` -> `--secret-names`,
a boolean as `--x`/`--no-x`), with the field's description as its help, so `--help` documents
every setting with no second copy to keep in step. `load_settings` lays the flags given over
the environment and the defaults and turns whatever pydantic or argparse objects to into one
`SettingsError` line that names the setting, its flag and its variables: the person who has
to fix it may have set any of the three.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NoReturn, get_args, get_origin

from pydantic import AliasChoices, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import SettingsError as _SourceError

from pull_secret_updater.settings import ENV_PREFIX, Settings, SettingsError

__all__ = ["build_parser", "env_vars", "flag", "load_settings"]


def load_settings(argv: Sequence[str] | None = None, *, prog: str | None = None) -> Settings:
    """Settings from the environment, overridden by command-line flags in `argv`.

    `argv` None means `sys.argv[1:]`, as with argparse. Raises SettingsError with a one-line
    message on a bad value or an unknown flag; `--help` prints every setting and exits.
    """
    parser = build_parser(prog=prog)
    namespace = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    overrides = vars(namespace)
    try:
        return Settings(**overrides)
    except ValidationError as e:
        raise SettingsError(_explain(e)) from None
    except _SourceError as e:
        raise SettingsError(" ".join(str(e).split())) from None


def build_parser(*, prog: str | None = None, add_help: bool = True) -> argparse.ArgumentParser:
    """An argument parser with one flag per setting, for use alone or as a parent parser.

    Flags left out are absent from the parsed namespace (not None), so the environment and
    the defaults still apply to them.
    """
    parser = _SettingsParser(
        prog=prog,
        add_help=add_help,
        formatter_class=_HelpFormatter,
        description="Settings may also be given as environment variables (shown in brackets).",
        argument_default=argparse.SUPPRESS,
    )
    for name, field in Settings.model_fields.items():
        help_text = f"{field.description} [{', '.join(env_vars(name))}]".replace("%", "%%")
        if field.annotation is bool:
            parser.add_argument(flag(name), dest=name, action=argparse.BooleanOptionalAction,
                                help=help_text)  # fmt: skip
        else:
            parser.add_argument(flag(name), dest=name, metavar=_metavar(field), help=help_text)
    return parser


def flag(name: str) -> str:
    """The command-line flag of a setting: `secret_names` -> `--secret-names`."""
    return "--" + name.replace("_", "-")


def env_vars(name: str) -> tuple[str, ...]:
    """The environment variables a setting is read from, the first one winning."""
    field = Settings.model_fields[name]
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(str(choice) for choice in alias.choices)
    return (f"{ENV_PREFIX}{name.upper()}",)


class _HelpFormatter(argparse.HelpFormatter):
    # Wraps at spaces only: "service-account" stays one word, and so does a path.
    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class _SettingsParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise SettingsError(message)


def _metavar(field: FieldInfo) -> str:
    annotation = field.annotation
    if annotation is int:
        return "INT"
    if annotation is float:
        return "SECONDS" if "second" in (field.description or "").lower() else "NUMBER"
    if annotation in (Path, Path | None):
        return "PATH"
    if annotation == list[str]:
        return "NAME[,NAME...]"
    if get_origin(annotation) is Literal:
        return "{" + ",".join(str(choice) for choice in get_args(annotation)) + "}"
    return "TEXT"


def _field_named(key: str) -> str:
    """The field an error location names: the field itself or one of its variables."""
    for name in Settings.model_fields:
        if key == name or key.upper() in env_vars(name):
            return name
    return key


def _explain(error: ValidationError) -> str:
    """Every problem pydantic found, on one line, each naming its setting's flag and variables."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        message = str(item["msg"]).removeprefix("Value error, ")
        location = item["loc"]
        name = _field_named(str(location[0])) if location else ""
        if name in Settings.model_fields:
            where = f"{name} ({flag(name)}, {', '.join(env_vars(name))})"
            problems.append(f"{where}: {message}")
        elif name:
            problems.append(f"{name}: {message}")
        else:
            problems.append(message)
    return "invalid settings: " + "; ".join(" ".join(p.split()) for p in problems)
