"""The official AWS ECR kubelet credential provider, run once against the local AWS stand-in.

``k8s.io/cloud-provider-aws/cmd/ecr-credential-provider`` at ``ECR_CREDENTIAL_PROVIDER_VERSION``
(hack/versions.env; v1.37.1, aws-sdk-go-v2 v1.41.1, config v1.29.14, service/ecr v1.55.1,
service/sts v1.33.19) is the reference the stand-in is checked against and the baseline of the
plugin start-up benchmark. ``hack/build-testbins.sh ecr`` builds it;
``devstack.binaries.find_ecr_credential_provider`` finds it. What follows was read from its
source at that version (``cmd/ecr-credential-provider/main.go``, ``plugin.go``) and the SDK's,
and checked by running it against a throwaway HTTPS stand-in that logged each request.

Invocation. No flags but ``--help`` and ``--version``; every run reads one request from stdin
and writes one response to stdout, then exits (status 1 on any error, whose message is the last
klog line on stderr: ``Error running credential provider plugin: <error>``). Stderr also gets
klog info lines (``Getting creds for private image <image>``, ``Getting creds for public
registry``, a warning when no region is found in the host). The plugin itself writes no token
or password to stderr (an error message quoted from a server could hold anything).

Request. Only ``apiVersion: credentialprovider.kubelet.k8s.io/v1`` is accepted (another
group/version fails with ``group version <gv> is not supported``), ``kind:
CredentialProviderRequest``. Fields read:

- ``image`` (required; empty fails with ``image in plugin request was empty``). Its host is
  ``url.Parse("https://" + image).Hostname()``, so a port is dropped.
- ``serviceAccountToken`` (kubelet service-account-token mode, when the provider config has
  ``tokenAttributes``): when non-empty, the plugin exchanges it itself (below).
- ``serviceAccountAnnotations["eks.amazonaws.com/ecr-role-arn"]``: the role for that exchange;
  when the annotation is absent (not merely empty) the env var ``AWS_ECR_ROLE_ARN`` is used.
  With a token but no role ARN it logs ``no arn provided, cannot assume role using
  ServiceAccountToken`` and falls back to the SDK's default credential chain.

Which ECR it asks. A host in ``public.ecr.aws`` or ``ecr-public.aws.com`` is ECR Public:
``ecrpublic.GetAuthorizationToken`` in ``us-east-1`` (fixed). Every other host, AWS-shaped or
not, is treated as private ECR: ``ecr.GetAuthorizationToken`` (no registry IDs), the region
being group 3 of ``ECR_PRIVATE_HOST`` below (e.g. ``eu-west-1`` from
``123456789012.dkr.ecr.eu-west-1.amazonaws.com``), which overrides ``AWS_REGION``. A non-AWS
host (``registry.local:5000``) gives no region: the plugin warns and uses the SDK's default
region (``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's; never IMDS); with an endpoint
override and no region at all the call still goes out, signed with an empty region in its
SigV4 scope. There is no ``matchImages`` check in the plugin: that is the kubelet's configuration.

Credentials. Unless the token mode applies, the SDK's default chain (``LoadDefaultConfig``):
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``; else
``AWS_WEB_IDENTITY_TOKEN_FILE`` with ``AWS_ROLE_ARN`` (``AWS_ROLE_SESSION_NAME``, default the
Unix time in ns): the SDK's stscreds calls STS ``AssumeRoleWithWebIdentity`` with the file's
content; else the shared config/credentials files (``AWS_PROFILE``, ``AWS_CONFIG_FILE``,
``AWS_SHARED_CREDENTIALS_FILE``), the container endpoint (``AWS_CONTAINER_CREDENTIALS_*``), and
EC2 IMDS (``AWS_EC2_METADATA_DISABLED=true`` turns it off). In token mode the plugin calls STS
``AssumeRoleWithWebIdentity`` itself, unsigned, with ``RoleArn`` = the role above,
``RoleSessionName=ecr-credential-provider`` and ``WebIdentityToken`` = the request's token; its
STS client's region is the image host's (none for ECR Public hosts: the default region), and
the returned keys sign the ECR call in place of the default chain's.

Endpoints and TLS (the SDK's, nothing of the plugin's own): ``AWS_ENDPOINT_URL_ECR``,
``AWS_ENDPOINT_URL_ECR_PUBLIC``, ``AWS_ENDPOINT_URL_STS``, and the global ``AWS_ENDPOINT_URL``
(``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`` disables them all). Caveat, verified: the STS client of
the SDK's web-identity-file chain is built before the global ``AWS_ENDPOINT_URL`` is resolved, so
with only ``AWS_ENDPOINT_URL`` set it still posts to ``https://sts.<region>.amazonaws.com/``;
``AWS_ENDPOINT_URL_STS`` reaches it. The plugin's own STS client (token mode) honours both.
``AWS_CA_BUNDLE`` (a PEM file) becomes the only roots of the plugin's HTTP client (30 s timeout per
attempt): it replaces the system's, since the SDK's transport has no RootCAs and gets a new pool
with the bundle alone; a missing file fails before any call (``open <path>: no such file or
directory``). Without it Go's system roots apply (``SSL_CERT_FILE`` works too);
``HTTPS_PROXY``/``NO_PROXY`` are honoured. The SDK's standard retryer makes 3 attempts
(``AWS_MAX_ATTEMPTS``) with back-off: a refused connection fails after about 2.5 s (``operation
error ECR: GetAuthorizationToken, exceeded maximum number of attempts, 3, https response error
StatusCode: 0, RequestID: , request send failed, Post "https://127.0.0.1:1/": dial tcp 127.0.0.1:1:
connect: connection refused``), an untrusted certificate after about 4.7 s (``... tls: failed to
verify certificate: x509: certificate signed by unknown authority``). In token mode the ECR call's
retryer also retries the STS exchange, 3 times 3 attempts: an unreachable STS fails after about
14 s (``operation error ECR: GetAuthorizationToken, exceeded maximum number of attempts, 3, get
identity: get credentials: failed to assume role: operation error STS: AssumeRoleWithWebIdentity,
exceeded maximum number of attempts, 3, ...``). If the STS client cannot be made (a missing
``AWS_CA_BUNDLE``), it logs ``failed to create sts client, cannot assume role`` and goes on with
the default chain (whose ECR client then fails the same).

Response. ``authorizationToken`` is base64 of ``user:password`` (``AWS:<token>``), split at the
first colon. ``{"kind": "CredentialProviderResponse", "apiVersion": ...v1, "cacheKeyType":
"Registry", "cacheDuration": ..., "auth": {<image host, port dropped>: {"username",
"password"}}}``. ``cacheDuration`` is half the time left until ``expiresAt`` (whole seconds; a
12-hour token gives ``"6h0m0s"``); ``"0s"`` (the kubelet does not cache) when ECR gave no
``expiresAt``; omitted (the kubelet's ``defaultCacheDuration``) when less than 2 s are left. The
plugin caches nothing itself: one process per call. Because the auth key has no port, the
kubelet (which requires equal ports when matching keys to images) will not use the answer for
an image whose host has a port.

Cold start, measured on the 2-core development machine (50 runs each, one after another, the
binary in the page cache): a call that fails without any network (no credentials, IMDS
disabled) takes 3.8 ms wall median (p90 4.9 ms, 3.4 ms CPU); a request rejected at decoding
3.5 ms; the first run after dropping the page cache about 30 ms. A successful call against a
local HTTPS stand-in (Python's http.server, TLS with a private CA): 5.7 ms with static keys
(ECR only), 7.9 ms with a web-identity file (STS, then ECR).

``run_official_ecr_plugin`` runs it once with a confined environment: no AWS variable of the
caller's, no shared config files, IMDS off, and ``AWS_ENDPOINT_URL_ECR``,
``AWS_ENDPOINT_URL_ECR_PUBLIC`` and ``AWS_ENDPOINT_URL_STS`` (not the global one, see above)
all set to the stand-in.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

API_VERSION = "credentialprovider.kubelet.k8s.io/v1"
# The ServiceAccount annotation naming the role of the token mode; AWS_ECR_ROLE_ARN otherwise.
ROLE_ANNOTATION = "eks.amazonaws.com/ecr-role-arn"
ECR_PUBLIC_HOSTS = ("public.ecr.aws", "ecr-public.aws.com")
# The plugin's regexp (main.go, ecrPrivateHostPattern): group 3 is the region.
ECR_PRIVATE_HOST = re.compile(
    r"^(\d{12})\.dkr[\.\-]ecr(\-fips)?\.([a-zA-Z0-9][a-zA-Z0-9-_]*)\."
    r"(amazonaws\.(?:com(?:\.cn)?|eu)|on\.(?:aws|amazonwebservices\.com\.cn)|sc2s\.sgov\.gov"
    r"|c2s\.ic\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov)$"
)
# Anything shaped like a JWT, redacted from the plugin's stderr before it goes into an error.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


class OfficialPluginError(RuntimeError):
    """The plugin failed or answered something else than a CredentialProviderResponse."""

    def __init__(self, message: str, *, returncode: int | None, stderr: str) -> None:
        super().__init__(f"{message}\n{stderr}" if stderr else message)
        self.returncode = returncode
        self.stderr = stderr


def region_of_image_host(host: str) -> str | None:
    """The region the plugin derives from an image host (None: the SDK's default region)."""
    match = ECR_PRIVATE_HOST.match(host)
    return match.group(3) if match else None


def build_request(
    image: str, *, service_account_token: str | None, role_arn: str | None
) -> dict[str, Any]:
    """The CredentialProviderRequest a kubelet sends: with a token, in service-account-token
    mode, the role in the annotation the plugin reads."""
    request: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "CredentialProviderRequest",
        "image": image,
    }
    if service_account_token is not None:
        request["serviceAccountToken"] = service_account_token
        if role_arn is not None:
            request["serviceAccountAnnotations"] = {ROLE_ANNOTATION: role_arn}
    return request


def plugin_env(
    *,
    endpoint: str,
    ca_file: Path,
    region: str,
    role_arn: str | None,
    web_identity_token_file: Path | None,
) -> dict[str, str]:
    """The plugin's whole environment: nothing of the caller's, so a developer's AWS profile,
    keys or IMDS never stand in for the stand-in. With ``web_identity_token_file`` the SDK's
    default chain assumes ``role_arn`` with that file's token (at ``AWS_ENDPOINT_URL_STS``)."""
    env = {
        "AWS_ENDPOINT_URL_ECR": endpoint,
        "AWS_ENDPOINT_URL_ECR_PUBLIC": endpoint,
        "AWS_ENDPOINT_URL_STS": endpoint,
        "AWS_CA_BUNDLE": str(ca_file),
        "AWS_REGION": region,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    if web_identity_token_file is not None:
        env["AWS_WEB_IDENTITY_TOKEN_FILE"] = str(web_identity_token_file)
        if role_arn is not None:
            env["AWS_ROLE_ARN"] = role_arn
    return env


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return _JWT.sub("<redacted-jwt>", text)


def run_official_ecr_plugin(
    binary: Path,
    *,
    image: str,
    endpoint: str,
    ca_file: Path,
    region: str,
    role_arn: str | None,
    service_account_token: str | None,
    web_identity_token_file: Path | None,
    timeout: float = 30,
) -> dict[str, Any]:
    """Run the plugin once as the kubelet would and return its parsed CredentialProviderResponse.

    ``role_arn`` goes where the mode reads it: the ``eks.amazonaws.com/ecr-role-arn`` annotation
    with ``service_account_token``, ``AWS_ROLE_ARN`` with ``web_identity_token_file`` (both, when
    both are given). Raises ``OfficialPluginError`` with the plugin's stderr, tokens redacted, if
    it exits non-zero, outlives ``timeout`` or prints no CredentialProviderResponse. Nothing is
    logged; the returned password is the caller's to keep out of logs.
    """
    request = build_request(image, service_account_token=service_account_token, role_arn=role_arn)
    env = plugin_env(
        endpoint=endpoint,
        ca_file=ca_file,
        region=region,
        role_arn=role_arn,
        web_identity_token_file=web_identity_token_file,
    )
    secrets = [service_account_token or ""]
    if web_identity_token_file is not None:
        with contextlib.suppress(OSError):  # the plugin reports it
            secrets.append(web_identity_token_file.read_text().strip())
    try:
        done = subprocess.run(
            [str(binary)],
            input=json.dumps(request),
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
        raise OfficialPluginError(
            f"{binary.name} did not answer within {timeout:g} s",
            returncode=None,
            stderr=_redact(stderr or "", secrets),
        ) from None
    stderr = _redact(done.stderr, secrets)
    if done.returncode != 0:
        raise OfficialPluginError(
            f"{binary.name} exited with status {done.returncode}",
            returncode=done.returncode,
            stderr=stderr,
        )
    try:
        response = json.loads(done.stdout)
    except ValueError:
        response = None
    if (
        not isinstance(response, dict)
        or response.get("kind") != "CredentialProviderResponse"
        or response.get("apiVersion") != API_VERSION
    ):
        # Its output may hold a password: only its size goes into the error.
        raise OfficialPluginError(
            f"{binary.name} printed no CredentialProviderResponse ({len(done.stdout)} bytes)",
            returncode=done.returncode,
            stderr=stderr,
        )
    return response
