"""``helm install`` with an ECR entry in ``providers``, then the installed controller asking AWS
STS for the role a Secret names.

The controller runs as the release's ServiceAccount, configured only by what the chart
installed (``PodRunner`` writes the projected tokens and the CA bundle where the Deployment
mounts them). STS is a recording stand-in on loopback, reached through the entry's
``sts_endpoint`` over TLS verified with the entry's own ``caBundle``; it refuses every role,
as AWS does for a role that does not trust the token. What it received is what AWS would: a
token from the projected volume with the audience an IAM OIDC provider expects and the
release's ServiceAccount as subject, for the role the Secret named, which the policy allowed.
"""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import pki
from devstack.stack import LocalStack
from pull_secret_updater.providers.ecr import DEFAULT_AUDIENCE
from pull_secret_updater.providers.ecr.spec import REGISTRIES, ROLE_ARN
from tests.deploy.support import CHART, Helm, PodRunner, value_args
from tests.helpers import LAST_ERROR, ClusterHelper, eventually

pytestmark = pytest.mark.stack

ROLE = "arn:aws:iam::111122223333:role/team-puller"
REGISTRY = "111122223333.dkr.ecr.eu-west-1.amazonaws.com"
REFUSAL = (
    b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
    b"<Code>AccessDenied</Code><Message>Not authorized to perform "
    b"sts:AssumeRoleWithWebIdentity</Message></Error><RequestId>0</RequestId></ErrorResponse>"
)


class _RefusingSTS(http.server.BaseHTTPRequestHandler):
    forms: list[dict[str, str]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        self.forms.append({k: v[0] for k, v in urllib.parse.parse_qs(body).items()})
        self.send_response(403)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(REFUSAL)))
        self.end_headers()
        self.wfile.write(REFUSAL)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def sts(stack: LocalStack, tmp_path: Path) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """An HTTPS endpoint, certified by the stack's CA, that records each form and refuses it."""
    pair = pki.issue_cert(stack.ca, tmp_path, stem="sts", common_name="sts", hosts=("127.0.0.1",))
    forms: list[dict[str, str]] = []
    handler = type("Handler", (_RefusingSTS,), {"forms": forms})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pair.cert, pair.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", forms
    finally:
        server.shutdown()
        server.server_close()


def test_installed_controller_sends_sts_its_projected_token_for_the_secrets_role(
    helm: Helm,
    stack: LocalStack,
    sts: tuple[str, list[dict[str, str]]],
    tmp_path: Path,
) -> None:
    url, forms = sts
    cluster = ClusterHelper(stack)
    namespace = cluster.namespace("psu-ecr")
    tenant = cluster.namespace("ecr-tenant")
    name = f"psu-{namespace.rsplit('-', 1)[1]}"
    ca = stack.ca_file.read_text()
    values = {
        "issuer": stack.token_service.url,
        "registry": stack.registry.host,
        "caBundle": ca,
        "providers": [{"kind": "ecr", "sts_endpoint": url, "ecr_endpoint": url, "caBundle": ca}],
        "policy": {"rules": [{"provider": "ecr", "identities": [ROLE], "namespaces": [tenant]}]},
        "leaderElection": {"leaseDuration": 4, "renewDeadline": 3, "retryPeriod": 0.5},
        "refresh": {"exchangeTimeout": 2, "backoffBase": 0.5, "backoffCap": 4},
    }
    helm.run("install", name, str(CHART), f"--namespace={namespace}", *value_args(values))
    runner = PodRunner(stack, namespace, f"{name}-pull-secret-updater", tmp_path / "pod")
    runner.workdir.mkdir()
    try:
        runner.start()
        cluster.create_pull_secret(tenant, None)
        cluster.kubectl("-n", tenant, "annotate", "secret", "pull-secret",
                        f"{ROLE_ARN}={ROLE}", f"{REGISTRIES}={REGISTRY}")  # fmt: skip

        error = eventually(
            lambda: cluster.annotations(tenant).get(LAST_ERROR), what="the refusal", timeout=30
        )

        assert "AccessDenied" in error, error
        form = forms[0]
        assert form["Action"] == "AssumeRoleWithWebIdentity"
        assert form["RoleArn"] == ROLE
        claims = json.loads(base64.urlsafe_b64decode(form["WebIdentityToken"].split(".")[1] + "=="))
        assert claims["aud"] == [DEFAULT_AUDIENCE]
        assert claims["sub"] == f"system:serviceaccount:{namespace}:controller"
    finally:
        runner.stop()
        print(f"--- {runner.pod_name} log (tail) ---\n{runner.log_tail()}")
        helm.run("uninstall", name, f"--namespace={namespace}", "--wait", check=False)
