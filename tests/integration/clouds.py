"""The cloud providers' integration tests' common ground: starting a controller with one
provider, reading and pulling with the entry it writes, and one `Cloud` per provider that
knows how its stand-in makes an identity, trusts a subject, shortens a lifetime and hands out
a genuine credential outside the controller (see `test_clouds.py`).
"""

from __future__ import annotations

import base64
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import boto3

from devstack.aws.standin import STS_AUDIENCE
from devstack.azure.standin import AUDIENCE as AZURE_AUDIENCE
from devstack.controller import NAMESPACE, SERVICE_ACCOUNT
from devstack.registry import TEST_IMAGE_REPOSITORY, TEST_IMAGE_TAG, Registry, skopeo_inspect
from devstack.stack import LocalStack
from pull_secret_updater.providers.gar import DEFAULT_AUDIENCE as GOOGLE_AUDIENCE
from tests.helpers import ClusterHelper, Start, unique
from tests.stack import azure_support, gcp_support

CONTROLLER_SUBJECT = f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
DEADLINE = 60.0
EXPIRES_AT = "pull-secret-updater.chainguard.dev/expires-at"


def token_path(stack: LocalStack, name: str, audience: str) -> Path:
    """Where controller `name` reads its projected token of `audience` (see
    `ControllerProcess.token_file`)."""
    return stack.workdir / "controllers" / name / "tokens" / audience / "token"


def entry_of(cluster: ClusterHelper, namespace: str, host: str) -> dict[str, Any] | None:
    """The pull Secret's entry for `host`, if it has one."""
    entry = cluster.docker_config(namespace).get("auths", {}).get(host)
    return entry if isinstance(entry, dict) else None


def password_of(entry: dict[str, Any]) -> tuple[str, str]:
    """An entry's user name and password, whether it has them apart or as `auth`."""
    if "password" in entry:
        return str(entry["username"]), str(entry["password"])
    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    return user, password


def replaced_entry(
    cluster: ClusterHelper, namespace: str, host: str, planted: str
) -> dict[str, Any] | None:
    """The entry for `host`, once its password is no longer the `planted` one."""
    entry = entry_of(cluster, namespace, host)
    return entry if entry is not None and password_of(entry)[1] != planted else None


def pull_at(address: str, stack: LocalStack, entry: dict[str, Any], tmp_path: Path) -> int:
    """skopeo inspect of the test image of the registry at `address` with `entry` as the
    credentials. A cloud registry's own name resolves only while a node runs, so skopeo is
    pointed at its address; its token realm still checks the credential against its name."""
    authfile = tmp_path / f"{unique('cloud-auth')}.json"
    user, password = password_of(entry)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    authfile.write_text(json.dumps({"auths": {address: {"auth": auth}}}))
    return skopeo_inspect(
        skopeo=stack.binaries.skopeo,
        image=f"{address}/{TEST_IMAGE_REPOSITORY}:{TEST_IMAGE_TAG}",
        authfile=authfile,
        ca_file=stack.ca_file,
    ).returncode


def planted_config(host: str, username: str, password: str) -> str:
    """A pull Secret's `.dockerconfigjson` holding one credential for `host`."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return json.dumps({"auths": {host: {"auth": auth}}})


class StandIn(Protocol):
    """What every cloud stand-in of the stack has: a registry, under the cloud's name, and
    faults a test switches on and off."""

    registry: Registry

    @property
    def registry_host(self) -> str: ...

    def set_fault(
        self, mode: str, *, api: str | None = None, count: int | None = None, delay: float = 5.0
    ) -> None: ...

    def clear_faults(self) -> None: ...


@dataclass(frozen=True)
class Throttled:
    """Which of its APIs a cloud throttles in the throttling scenario (its stand-in's name),
    and the words in which the controller reports it."""

    api: str
    words: str


#: What a Secret names to be filled from a cloud: a role, a pool provider, an app.
IdentityT = TypeVar("IdentityT")


@dataclass(frozen=True)
class Cloud(ABC, Generic[IdentityT]):
    """A cloud provider and its stand-in, as the scenarios every cloud shares need them."""

    #: The provider's kind, and the prefix of the controllers' and namespaces' names.
    kind: str
    #: The audience of the controller's projected token.
    audience: str
    #: The user name of the entries the provider writes.
    username: str
    #: A password the cloud never issued, in the form of its credentials.
    made_up: str
    #: The words of the refusal of a subject the identity does not trust; the first is what
    #: the Warning Event says.
    refusal: tuple[str, ...]
    #: Seconds a shortened credential lives.
    short_lifetime: int
    #: The cloud's stand-in in the stack.
    standin: Callable[[LocalStack], StandIn]
    #: How the cloud is throttled, where the controller's backoff can be seen against it.
    throttled: Throttled | None = None

    def host(self, stack: LocalStack) -> str:
        """The registry's name, as pull Secrets hold it."""
        return self.standin(stack).registry_host

    def section(self, stack: LocalStack, name: str) -> dict[str, object]:
        """The PSU_PROVIDERS section of controller `name`."""
        token = token_path(stack, name, self.audience)
        return {"kind": self.kind, **self.endpoints(stack), "ca_bundle": str(stack.ca_file),
                "token_path": str(token)}  # fmt: skip

    def pull(self, stack: LocalStack, entry: dict[str, Any], tmp_path: Path) -> int:
        """skopeo inspect of the registry's test image with `entry` (see `pull_at`)."""
        return pull_at(self.standin(stack).registry.address, stack, entry, tmp_path)

    @abstractmethod
    def endpoints(self, stack: LocalStack) -> dict[str, object]:
        """The provider's settings of where the cloud answers."""

    @abstractmethod
    def trusting(self, stack: LocalStack, subject: str) -> IdentityT:
        """A new identity that trusts `subject` (and no other), with nothing more."""

    @abstractmethod
    def puller(self, stack: LocalStack) -> IdentityT:
        """A new identity that trusts the controller and may pull from the registry."""

    @abstractmethod
    def trust(self, stack: LocalStack, identity: IdentityT, subject: str) -> None:
        """`identity` trusts `subject` from now on."""

    @abstractmethod
    def ask(self, cluster: ClusterHelper, namespace: str, identity: IdentityT) -> None:
        """Annotate the namespace's pull Secret to be filled from `identity`."""

    @abstractmethod
    def want_identity(self, stack: LocalStack, identity: IdentityT) -> str:
        """`identity` as the provider names it: in the controller's log lines of its
        exchanges and in the filled-identity annotation."""

    @abstractmethod
    def refused_calls(self, stack: LocalStack, identity: IdentityT) -> int:
        """How many of the first exchange's calls for `identity` the cloud refused."""

    @abstractmethod
    def issued(self, stack: LocalStack, identity: IdentityT) -> int:
        """How many registry credentials the cloud issued for `identity`."""

    @abstractmethod
    def set_lifetime(self, stack: LocalStack, seconds: int | None) -> None:
        """Registry credentials live `seconds` from now on (None: the cloud's own lifetime)."""

    @abstractmethod
    def genuine(self, stack: LocalStack, identity: IdentityT, tmp_path: Path) -> str:
        """A password for the registry, obtained for `identity` outside the controller with
        the vendor's SDK (as anyone holding a token of the controller's ServiceAccount could)."""


def controller_token(stack: LocalStack, audience: str) -> str:
    """A token of the controller's ServiceAccount for `audience`."""
    return stack.control_plane.service_account_token(NAMESPACE, SERVICE_ACCOUNT, audience=audience)


@dataclass(frozen=True)
class Role:
    """An IAM role: its name (for its trust policy) and ARN (what a Secret names)."""

    name: str
    arn: str


class Ecr(Cloud[Role]):
    """AWS: an IAM role's web identity, then ECR's GetAuthorizationToken."""

    def endpoints(self, stack: LocalStack) -> dict[str, object]:
        return dict.fromkeys(("sts_endpoint", "ecr_endpoint"), stack.aws.endpoint)

    def trusting(self, stack: LocalStack, subject: str) -> Role:
        name = unique("trusting")
        return Role(name, stack.aws.create_role(name, subjects=subject))

    def puller(self, stack: LocalStack) -> Role:
        name = unique("puller")
        return Role(name, stack.aws.create_role(name, subjects=CONTROLLER_SUBJECT))

    def trust(self, stack: LocalStack, identity: Role, subject: str) -> None:
        stack.aws.set_trust_policy(identity.name, stack.aws.trust_policy(subject))

    def ask(self, cluster: ClusterHelper, namespace: str, identity: Role) -> None:
        ask_ecr(cluster, namespace, identity.arn, cluster.stack.aws.registry_host)

    def want_identity(self, stack: LocalStack, identity: Role) -> str:
        return identity.arn

    def refused_calls(self, stack: LocalStack, identity: Role) -> int:
        return stack.aws.assumed(identity.arn, "error")

    def issued(self, stack: LocalStack, identity: Role) -> int:
        """GetAuthorizationToken's answers for the role."""
        return stack.aws.authorizations(identity.arn)

    def set_lifetime(self, stack: LocalStack, seconds: int | None) -> None:
        stack.aws.set_ecr_token_lifetime(seconds)

    def genuine(self, stack: LocalStack, identity: Role, tmp_path: Path) -> str:
        """A genuine password of the account, with boto3: STS, then ECR."""
        sts = boto3.client("sts", endpoint_url=stack.aws.endpoint, verify=str(stack.ca_file),
                           region_name=stack.aws.region, aws_access_key_id="x",
                           aws_secret_access_key="x")  # fmt: skip
        keys = sts.assume_role_with_web_identity(
            RoleArn=identity.arn,
            RoleSessionName="elsewhere",
            WebIdentityToken=controller_token(stack, STS_AUDIENCE),
        )["Credentials"]
        ecr = boto3.client("ecr", endpoint_url=stack.aws.endpoint, verify=str(stack.ca_file),
                           region_name=stack.aws.region, aws_access_key_id=keys["AccessKeyId"],
                           aws_secret_access_key=keys["SecretAccessKey"],
                           aws_session_token=keys["SessionToken"])  # fmt: skip
        data = ecr.get_authorization_token()["authorizationData"][0]
        return base64.b64decode(data["authorizationToken"]).decode().partition(":")[2]


ECR = Ecr(kind="ecr", audience=STS_AUDIENCE, username="AWS", made_up="made-up-password",
          refusal=("AccessDenied", "AssumeRoleWithWebIdentity"), short_lifetime=30,
          standin=lambda stack: stack.aws,
          throttled=Throttled(api="ecr", words="ThrottlingException"))  # fmt: skip


def ask_ecr(cluster: ClusterHelper, namespace: str, role: str, host: str) -> None:
    """Annotate the namespace's pull Secret to be filled from `role` for `host`."""
    cluster.kubectl("-n", namespace, "annotate", "--overwrite", "secret", "pull-secret",
                    f"ecr.pull-secret-updater.chainguard.dev/role-arn={role}",
                    f"ecr.pull-secret-updater.chainguard.dev/registries={host}")  # fmt: skip


@dataclass(frozen=True)
class GoogleIdentity:
    """A workload identity pool provider, and the service account to impersonate (None: the
    federated token itself is written)."""

    provider: str
    email: str | None = None


class Gar(Cloud[GoogleIdentity]):
    """Google: STS's token exchange, then IAM Credentials' generateAccessToken."""

    def endpoints(self, stack: LocalStack) -> dict[str, object]:
        return dict.fromkeys(("sts_endpoint", "iamcredentials_endpoint"), stack.gcp.endpoint)

    def trusting(self, stack: LocalStack, subject: str) -> GoogleIdentity:
        """A provider admitting `subject`, and no service account."""
        return GoogleIdentity(new_provider(stack, [subject]))

    def puller(self, stack: LocalStack) -> GoogleIdentity:
        """A provider admitting the controller, and a service account its principal may
        impersonate."""
        provider = new_provider(stack, [CONTROLLER_SUBJECT])
        email = stack.gcp.create_service_account(unique("puller")[:30])
        stack.gcp.bind(email, stack.gcp.principal(CONTROLLER_SUBJECT))
        return GoogleIdentity(provider, email)

    def trust(self, stack: LocalStack, identity: GoogleIdentity, subject: str) -> None:
        stack.gcp.allow_subject(identity.provider, subject)

    def ask(self, cluster: ClusterHelper, namespace: str, identity: GoogleIdentity) -> None:
        ask_gar(cluster, namespace, identity, cluster.stack.gcp.registry_host)

    def want_identity(self, stack: LocalStack, identity: GoogleIdentity) -> str:
        return identity.email or identity.provider

    def refused_calls(self, stack: LocalStack, identity: GoogleIdentity) -> int:
        return stack.gcp.exchanges(identity.provider, "error")

    def issued(self, stack: LocalStack, identity: GoogleIdentity) -> int:
        """Access tokens generated for the service account, or else federated tokens."""
        if identity.email is not None:
            return stack.gcp.generations(identity.email)
        return stack.gcp.exchanges(identity.provider)

    def set_lifetime(self, stack: LocalStack, seconds: int | None) -> None:
        if seconds is None:
            stack.gcp.set_lifetimes()
        else:
            stack.gcp.set_lifetimes(access_token=seconds)

    def genuine(self, stack: LocalStack, identity: GoogleIdentity, tmp_path: Path) -> str:
        """A genuine token of the service account, with google-auth."""
        assert identity.email is not None, "the service account to impersonate"
        token_file = tmp_path / "token"
        token_file.write_text(controller_token(stack, GOOGLE_AUDIENCE))
        workload = gcp_support.Workload(
            NAMESPACE, SERVICE_ACCOUNT, identity.provider, identity.email
        )
        return gcp_support.refresh(stack, gcp_support.sdk_credentials(stack, workload, token_file))


GAR = Gar(kind="gar", audience=GOOGLE_AUDIENCE, username="oauth2accesstoken",
          made_up="ya29.made-up", refusal=("unauthorized_client", "attribute condition"),
          short_lifetime=40, standin=lambda stack: stack.gcp,
          throttled=Throttled(api="iamcredentials", words="429 RESOURCE_EXHAUSTED"))  # fmt: skip


def new_provider(stack: LocalStack, subjects: list[str]) -> str:
    """A new workload identity pool provider admitting `subjects`."""
    return stack.gcp.create_pool_provider(
        unique("kube")[:32], allowed_audiences=[GOOGLE_AUDIENCE], allowed_subjects=subjects
    )


def ask_gar(cluster: ClusterHelper, namespace: str, identity: GoogleIdentity, host: str) -> None:
    """Annotate the namespace's pull Secret to be filled from `identity` for `host`."""
    prefix = "gar.pull-secret-updater.chainguard.dev/"
    email = [f"{prefix}service-account={identity.email}"] if identity.email else []
    cluster.kubectl("-n", namespace, "annotate", "--overwrite", "secret", "pull-secret",
                    f"{prefix}workload-identity-provider={identity.provider}",
                    f"{prefix}registries={host}", *email)  # fmt: skip


@dataclass(frozen=True)
class App:
    """An Entra app registration, by its client ID."""

    client_id: str


ACR_PREFIX = "acr.pull-secret-updater.chainguard.dev/"


class Acr(Cloud[App]):
    """Azure: Entra's token for an app, then the registry's exchange for a refresh token."""

    def endpoints(self, stack: LocalStack) -> dict[str, object]:
        """The stand-in's own section: its tenant, its authority and its registry."""
        return dict(stack.azure.section())

    def trusting(self, stack: LocalStack, subject: str) -> App:
        """An app trusting `subject`, with AcrPull on the registry."""
        return App(stack.azure.create_puller(unique("trusting"), subject=subject))

    def puller(self, stack: LocalStack) -> App:
        return App(stack.azure.create_puller(unique("puller"), subject=CONTROLLER_SUBJECT))

    def trust(self, stack: LocalStack, identity: App, subject: str) -> None:
        stack.azure.add_federated_credential(identity.client_id, subject=subject)

    def ask(self, cluster: ClusterHelper, namespace: str, identity: App) -> None:
        azure = cluster.stack.azure
        cluster.kubectl("-n", namespace, "annotate", "--overwrite", "secret", "pull-secret",
                        f"{ACR_PREFIX}tenant-id={azure.tenant}",
                        f"{ACR_PREFIX}client-id={identity.client_id}",
                        f"{ACR_PREFIX}registry={azure.registry_host}")  # fmt: skip

    def want_identity(self, stack: LocalStack, identity: App) -> str:
        return f"{stack.azure.tenant}/{identity.client_id}"

    def refused_calls(self, stack: LocalStack, identity: App) -> int:
        return stack.azure.tokens(identity.client_id, "error")

    def issued(self, stack: LocalStack, identity: App) -> int:
        """The registry's exchanges for the app's access tokens."""
        return stack.azure.exchanges(identity.client_id)

    def set_lifetime(self, stack: LocalStack, seconds: int | None) -> None:
        stack.azure.set_lifetimes(refresh_token=seconds or 0)

    def genuine(self, stack: LocalStack, identity: App, tmp_path: Path) -> str:
        """A genuine refresh token for the app, with azure-identity and the registry's
        exchange."""
        token_file = tmp_path / "token"
        token_file.write_text(controller_token(stack, AZURE_AUDIENCE))
        workload = azure_support.Workload(NAMESPACE, SERVICE_ACCOUNT, identity.client_id)
        credential = azure_support.credential(stack, workload, token_file)
        access = credential.get_token(azure_support.SCOPE).token
        return str(azure_support.exchange(stack, access).json()["refresh_token"])


ACR = Acr(kind="acr", audience=AZURE_AUDIENCE, username="00000000-0000-0000-0000-000000000000",
          made_up="made-up-refresh-token", refusal=("AADSTS700213", "invalid_client"),
          short_lifetime=30, standin=lambda stack: stack.azure)  # fmt: skip

CLOUDS: tuple[Cloud[Any], ...] = (ECR, GAR, ACR)
#: The clouds throttled in the throttling scenario: ACR answers its throttling with
#: Retry-After, which sets the retries' pace instead of the backoff the scenario counts.
THROTTLED = tuple(cloud for cloud in CLOUDS if cloud.throttled is not None)


def start_with(
    cloud: Cloud[Any],
    stack: LocalStack,
    start_controller: Start,
    name: str,
    env: dict[str, str] | None = None,
) -> Any:
    """Controller `name` with `cloud`'s provider (its one PSU_PROVIDERS section) and a
    projected token of its audience; `env` adds to its environment."""
    providers = {"PSU_PROVIDERS": json.dumps([cloud.section(stack, name)])}
    return start_controller(name, env={**providers, **(env or {})}, audiences=(cloud.audience,))
