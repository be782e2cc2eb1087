"""Printed AWS CLI commands as bash hands them to `aws`: pasted, line continuations, quotes
and all, with `aws` a function that records its arguments."""

from __future__ import annotations

import json
import subprocess
import sys

_ECHO = "import json, sys; print(json.dumps(sys.argv[1:]))"


def aws_calls(script: str) -> list[list[str]]:
    """The arguments of each `aws` command the script runs, in order."""
    recorder = f'aws() {{ "{sys.executable}" -c "{_ECHO}" "$@"; }}'
    shell = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f"{recorder}\n{script}"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert shell.returncode == 0, shell.stderr
    return [json.loads(line) for line in shell.stdout.splitlines()]


def options(argv: list[str]) -> dict[str, str]:
    """`iam <operation> --key value ...` as {key: value} (every option here takes one value)."""
    assert argv[0] == "iam", argv
    pairs = argv[2:]
    assert len(pairs) % 2 == 0, argv
    return {k.removeprefix("--"): v for k, v in zip(pairs[::2], pairs[1::2], strict=True)}


def trust_conditions(argv: list[str]) -> tuple[str, dict[str, str]]:
    """A create-role call's trust policy: its federated principal and StringEquals."""
    (statement,) = json.loads(options(argv)["assume-role-policy-document"])["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    return statement["Principal"]["Federated"], dict(statement["Condition"]["StringEquals"])
