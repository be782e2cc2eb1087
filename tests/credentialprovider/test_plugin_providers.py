"""One plugin, every provider: each entry reads its own annotations and the image's registry,
and whatever it cannot use is one line and exit 2 before anything is sent: another provider's
annotations, a registry that is not the provider's, a malformed value, options of another
provider."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pull_secret_updater.credentialprovider.options import UsageError, parse_options
from pull_secret_updater.credentialprovider.plugin import USAGE, plan_exchange
from pull_secret_updater.credentialprovider.protocol import parse_request
from tests.credentialprovider.support import POD_SA_TOKEN, call, request
from tests.fakes import FakeClock
from tests.tokens.fakes import FakeTokenService

ROLE = "arn:aws:iam::111122223333:role/puller"
ECR_IMAGE = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/app"
WIP = "projects/123456789012/locations/global/workloadIdentityPools/cluster/providers/kube"
GAR_IMAGE = "europe-west4-docker.pkg.dev/project/repo/app"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "11111111-2222-3333-4444-555555555555"
ACR_IMAGE = "myregistry.azurecr.io/app"

ECR_KEY = "ecr.pull-secret-updater.chainguard.dev/role-arn"
GAR_KEY = "gar.pull-secret-updater.chainguard.dev/workload-identity-provider"
GAR_SA = "gar.pull-secret-updater.chainguard.dev/service-account"
ACR_TENANT = "acr.pull-secret-updater.chainguard.dev/tenant-id"
ACR_CLIENT = "acr.pull-secret-updater.chainguard.dev/client-id"


def plan(provider: str, image: str, annotations: dict[str, str], *args: str) -> Any:
    document = request(image=image, annotations=annotations)
    raw = json.dumps(document).encode()
    return plan_exchange(parse_request(raw), parse_options([f"--provider={provider}", *args]))


def test_each_provider_asks_for_what_its_annotations_and_the_image_name() -> None:
    ecr = plan("ecr", ECR_IMAGE, {ECR_KEY: ROLE})
    assert (ecr.want.identity, ecr.want.scope, ecr.want.registries) == (
        ROLE, "eu-west-1", ("111122223333.dkr.ecr.eu-west-1.amazonaws.com",))  # fmt: skip
    assert ecr.who == "ServiceAccount team-a/app"
    gar = plan("gar", GAR_IMAGE, {GAR_KEY: WIP, GAR_SA: "puller@p.iam.gserviceaccount.com"})
    assert (gar.want.identity, gar.want.scope) == ("puller@p.iam.gserviceaccount.com", WIP)
    federated = plan("gar", GAR_IMAGE, {GAR_KEY: WIP})
    assert (federated.want.identity, federated.want.scope) == (WIP, "")
    acr = plan("acr", ACR_IMAGE, {ACR_TENANT: TENANT, ACR_CLIENT: CLIENT.upper()})
    assert (acr.want.identity, acr.want.registries) == (
        f"{TENANT}/{CLIENT}", ("myregistry.azurecr.io",))  # fmt: skip


@pytest.mark.parametrize(
    ("provider", "image", "annotations", "message"),
    [
        ("ecr", ECR_IMAGE, {}, f"has no annotation {ECR_KEY}: annotate it for Amazon ECR"),
        ("ecr", ECR_IMAGE, {ECR_KEY: "arn:aws:iam::1:role/x"}, "is not an IAM role ARN"),
        ("ecr", "docker.io/library/app", {ECR_KEY: ROLE}, "is not on a Amazon ECR registry"),
        ("ecr", "111122223333.dkr.ecr.cn-north-1.amazonaws.com.cn/app", {ECR_KEY: ROLE},
         "outside the partition"),
        ("gar", GAR_IMAGE, {GAR_SA: "a@p.iam.gserviceaccount.com"}, f"has no annotation {GAR_KEY}"),
        ("gar", GAR_IMAGE, {GAR_KEY: "projects/x"}, "not a workload identity pool provider"),
        ("gar", ACR_IMAGE, {GAR_KEY: WIP}, "not on a Google Artifact Registry registry"),
        ("acr", ACR_IMAGE, {ACR_TENANT: TENANT}, f"{ACR_CLIENT} is missing"),
        ("acr", ACR_IMAGE, {ACR_TENANT: TENANT, ACR_CLIENT: "abc"}, "is not a GUID"),
        ("acr", "myregistry.azurecr.io.evil.example/app", {ACR_TENANT: TENANT, ACR_CLIENT: CLIENT},
         "not on a Azure Container Registry registry"),
    ],
)  # fmt: skip
def test_what_a_provider_cannot_use_is_one_line_and_nothing_is_sent(
    provider: str, image: str, annotations: dict[str, str], message: str
) -> None:
    service = FakeTokenService(clock=FakeClock())
    outcome = call(service, request(image=image, annotations=annotations),
                   f"--provider={provider}", base=())  # fmt: skip
    assert outcome.status == USAGE
    assert outcome.stdout == b""
    assert message in outcome.stderr
    assert outcome.stderr.count("\n") == 1
    assert POD_SA_TOKEN not in outcome.stderr
    assert service.requests == []


def test_a_google_entry_bound_to_one_pool_provider_refuses_another() -> None:
    audience = f"https://iam.googleapis.com/{WIP}"
    other = WIP.replace("providers/kube", "providers/other")
    service = FakeTokenService(clock=FakeClock())
    outcome = call(service, request(image=GAR_IMAGE, annotations={GAR_KEY: other}),
                   "--provider=gar", f"--audience={audience}", base=())  # fmt: skip
    assert outcome.status == USAGE
    assert "names another provider" in outcome.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--provider=ecr", "--issuer=https://issuer.example"], "chainguard provider only"),
        (["--provider=gar", "--identity-annotation=x"], "chainguard provider only"),
        (["--provider=acr", "--key-cache=/tmp/k"], "chainguard provider only"),
        (["--provider=acr", "--node-token-file=/t", "--node-identity=a/b"], "chainguard"),
        (["--provider=ecr", "--endpoint=iamcredentials=https://x"], "no endpoint"),
        (["--provider=ecr", "--endpoint=sts=http://x"], "https://"),
        (["--provider=gar", "--audience=two words"], "--audience"),
        (["--provider=quay"], "invalid choice"),
    ],
)
def test_options_of_another_provider_are_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_options(argv)
