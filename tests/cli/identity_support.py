"""What the identity-command tests of every provider share: the issuers and keys the cluster
of the `issuer` fixture (conftest.py) serves, and the command run in-process."""

from __future__ import annotations

import pytest

from pull_secret_updater.cli import main

EKS = "https://oidc.eks.eu-west-1.amazonaws.com/id/5C0FFEE"
KIND = "https://kubernetes.default.svc.cluster.local"
JWKS = {"keys": [{"kty": "RSA", "kid": "k", "n": "q83v", "e": "AQAB"}]}


def identity_command(
    capsys: pytest.CaptureFixture[str], provider: str, *args: str
) -> tuple[str, str]:
    """`identity-command --provider <provider> <args>`, which must succeed: its stdout, and
    its stderr with white space folded to single spaces."""
    argv = ["identity-command", "--provider", provider, *args]
    assert main(argv) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    return captured.out, " ".join(captured.err.split())
