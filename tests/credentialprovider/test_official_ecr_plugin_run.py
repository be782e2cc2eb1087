"""devstack.ecrplugin: the request and environment it gives the official ECR plugin, checked
with a stand-in executable that records them (no Go binary, no network)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from devstack.ecrplugin import (
    ROLE_ANNOTATION,
    OfficialPluginError,
    build_request,
    region_of_image_host,
    run_official_ecr_plugin,
)

ROLE = "arn:aws:iam::123456789012:role/pull"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:1"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
RESPONSE = {
    "kind": "CredentialProviderResponse",
    "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
    "cacheKeyType": "Registry",
    "cacheDuration": "6h0m0s",
    "auth": {"123456789012.dkr.ecr.eu-west-1.amazonaws.com": {"username": "AWS", "password": "p"}},
}


def fake_plugin(tmp_path: Path, *, stdout: str, status: int = 0, stderr: str = "") -> Path:
    """An executable that saves its stdin and environment, then answers as told."""
    script = tmp_path / "ecr-credential-provider"
    script.write_text(
        f"#!/bin/sh\ncat > {tmp_path}/stdin\n/usr/bin/env > {tmp_path}/env\n"
        f"printf '%s' '{stdout}'\nprintf '%s' '{stderr}' >&2\nexit {status}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def recorded(tmp_path: Path) -> tuple[dict[str, object], dict[str, str]]:
    env = dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines())
    return json.loads((tmp_path / "stdin").read_text()), env


def test_token_mode_sends_the_token_and_the_role_annotation(tmp_path: Path) -> None:
    plugin = fake_plugin(tmp_path, stdout=json.dumps(RESPONSE))
    answer = run_official_ecr_plugin(
        plugin,
        image=IMAGE,
        endpoint="https://127.0.0.1:8443",
        ca_file=tmp_path / "ca.crt",
        region="us-east-1",
        role_arn=ROLE,
        service_account_token=TOKEN,
        web_identity_token_file=None,
    )
    assert answer == RESPONSE
    request, env = recorded(tmp_path)
    assert request == {
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderRequest",
        "image": IMAGE,
        "serviceAccountToken": TOKEN,
        "serviceAccountAnnotations": {ROLE_ANNOTATION: ROLE},
    }
    for name in ("AWS_ENDPOINT_URL_ECR", "AWS_ENDPOINT_URL_ECR_PUBLIC", "AWS_ENDPOINT_URL_STS"):
        assert env[name] == "https://127.0.0.1:8443"
    assert env["AWS_CA_BUNDLE"] == str(tmp_path / "ca.crt")
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"
    assert env["AWS_CONFIG_FILE"] == env["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull
    assert "AWS_ROLE_ARN" not in env
    assert "AWS_WEB_IDENTITY_TOKEN_FILE" not in env


def test_file_mode_passes_the_role_and_the_file_through_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-the-callers-environment")
    monkeypatch.setenv("AWS_PROFILE", "developer")
    plugin = fake_plugin(tmp_path, stdout=json.dumps(RESPONSE))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    run_official_ecr_plugin(
        plugin,
        image=IMAGE,
        endpoint="https://127.0.0.1:8443",
        ca_file=tmp_path / "ca.crt",
        region="us-east-1",
        role_arn=ROLE,
        service_account_token=None,
        web_identity_token_file=token_file,
    )
    request, env = recorded(tmp_path)
    assert "serviceAccountToken" not in request
    assert "serviceAccountAnnotations" not in request
    assert env["AWS_ROLE_ARN"] == ROLE
    assert env["AWS_WEB_IDENTITY_TOKEN_FILE"] == str(token_file)
    assert "AWS_ACCESS_KEY_ID" not in env
    assert "AWS_PROFILE" not in env


def test_a_token_without_a_role_sends_no_annotation() -> None:
    request = build_request(IMAGE, service_account_token=TOKEN, role_arn=None)
    assert request["serviceAccountToken"] == TOKEN
    assert "serviceAccountAnnotations" not in request


def test_a_failure_raises_with_stderr_and_no_token(tmp_path: Path) -> None:
    plugin = fake_plugin(tmp_path, stdout="", status=1, stderr=f"E1207 failed: token {TOKEN}")
    with pytest.raises(OfficialPluginError) as raised:
        run_official_ecr_plugin(
            plugin,
            image=IMAGE,
            endpoint="https://127.0.0.1:1",
            ca_file=tmp_path / "ca.crt",
            region="us-east-1",
            role_arn=ROLE,
            service_account_token=TOKEN,
            web_identity_token_file=None,
        )
    assert raised.value.returncode == 1
    assert "E1207 failed" in str(raised.value)
    assert TOKEN not in str(raised.value)


def test_an_answer_that_is_no_response_is_refused_without_quoting_it(tmp_path: Path) -> None:
    plugin = fake_plugin(tmp_path, stdout='{"password": "secret"}')
    with pytest.raises(OfficialPluginError, match="no CredentialProviderResponse") as raised:
        run_official_ecr_plugin(
            plugin,
            image=IMAGE,
            endpoint="https://127.0.0.1:1",
            ca_file=tmp_path / "ca.crt",
            region="us-east-1",
            role_arn=None,
            service_account_token=None,
            web_identity_token_file=None,
        )
    assert "secret" not in str(raised.value)


@pytest.mark.parametrize(
    ("host", "region"),
    [
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "eu-west-1"),
        ("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com", "us-gov-west-1"),
        ("123456789012.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn", "cn-north-1"),
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com.evil", None),
        ("registry.local", None),
        ("public.ecr.aws", None),
    ],
)
def test_region_of_image_host(host: str, region: str | None) -> None:
    assert region_of_image_host(host) == region
