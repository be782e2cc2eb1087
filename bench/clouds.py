"""The registry providers a scenario's Secrets ask for, each with what the scenarios need of
the stand-in that serves it: identities that trust the controller's ServiceAccount, the
annotations that ask for them, the controller's provider section, the stand-in's call counts,
a credential minted as anyone allowed the identity could, and the stand-in's ledger as the
judge of what a Secret holds.

- ``Chainguard``: the token service's identities and cgr.dev tokens (verifiable: their
  claims say what they are; ``observe.verify_tokens`` checks them).
- ``Ecr``: IAM roles on the AWS stand-in (``stack.aws``); STS and ECR calls.
- ``Gar``: workload identity pool providers on the Google stand-in (``stack.gcp``), one per
  identity, every other one with a service account to impersonate; STS and IAM Credentials
  calls.
- ``Acr``: apps with a federated credential and AcrPull on the Azure stand-in's registry
  (``stack.azure``); Entra token requests and registry exchanges.

A cloud credential is opaque (an ECR password, a Google access token) or unverifiable (an ACR
refresh token): whether one is genuine, for which identity and until when, only its stand-in
knows. A ``Book`` reads that ledger, and reads it again when a credential it does not know
turns up (once per identity and refresh window), so a watch can follow cloud entries with
their expiry (``Book.reader``).

Every identity is named by what the controller fills the entry for (its ``filled-identity``:
a UID, a role ARN, a service account's email or a pool provider's name, ``<tenant>/<client>``),
and the counts are keyed by it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx2
import jwt

from bench import lab
from bench.observe import JSON, Reader, Token, Verification, admin_http, list_managed, token_of
from bench.observe import registry_password as entry_password
from devstack.aws.standin import STS_AUDIENCE
from devstack.controller import NAMESPACE, SERVICE_ACCOUNT, ControllerProcess
from devstack.stack import LocalStack
from pull_secret_updater.providers import acr as acr_provider
from pull_secret_updater.providers import ecr as ecr_provider
from pull_secret_updater.providers import gar as gar_provider
from pull_secret_updater.providers.acr import spec as acr_spec
from pull_secret_updater.providers.chainguard import spec as chainguard_spec
from pull_secret_updater.providers.ecr import spec as ecr_spec
from pull_secret_updater.providers.gar import spec as gar_spec

#: Calls by API, then by identity: {"ok": n, "error": n}.
Calls = dict[str, dict[str, dict[str, int]]]


@dataclass(frozen=True)
class Identity:
    """One identity a Secret may ask for: what the controller fills its entry for (`key`),
    and the annotations that ask for it."""

    key: str
    annotations: Mapping[str, str]


@dataclass(frozen=True)
class Issued:
    """What a stand-in says of a credential it issued."""

    identity: str
    expires_at: float


def digest(credential: str) -> str:
    """A short name for a credential in results and logs, which never hold the credential."""
    return hashlib.sha256(credential.encode()).hexdigest()[:16]


def _counts(
    stats: Mapping[str, Any] | None, key_of: Mapping[str, str] | None = None
) -> dict[str, dict[str, int]]:
    """{identity: {"ok", "error"}} from a stand-in's per-name stats, renamed by `key_of`."""
    counted: dict[str, dict[str, int]] = {}
    for name, c in (stats or {}).items():
        key = (key_of or {}).get(str(name), str(name))
        counted[key] = {"ok": int(c.get("ok", 0)), "error": int(c.get("error", 0))}
    return counted


def _sa_token(stack: LocalStack, audience: str) -> str:
    """A token of the controller's ServiceAccount with `audience`, as its projected volume
    holds."""
    return stack.control_plane.service_account_token(
        NAMESPACE, SERVICE_ACCOUNT, audience=audience, seconds=3600
    )


def _http(stack: LocalStack) -> httpx2.Client:
    return httpx2.Client(verify=str(stack.ca_file), timeout=10.0, trust_env=False)


class Cloud:
    """A registry provider as the scenarios see it (the base: what every one has)."""

    #: The provider's kind, and its name in figures and targets.
    kind: ClassVar[str]
    title: ClassVar[str]
    username: ClassVar[str]
    #: The controller's filled-identity annotation for this provider.
    filled: ClassVar[str]
    #: What one identity is called, in targets.
    identity_word: ClassVar[str]
    #: The word for its credential, in targets.
    credential: ClassVar[str]
    #: The stand-in's APIs a credential takes, as `calls` names them.
    apis: ClassVar[tuple[str, ...]]
    #: The API whose calls each give one credential (one per identity and refresh window).
    issuing_api: ClassVar[str]
    #: The audience of the controller's token for it (None: the default provider's).
    audience: ClassVar[str | None] = None
    #: Whether its credentials carry verifiable claims (else a `Book` knows them).
    verifiable: ClassVar[bool] = False
    #: The field of `Sizes` that says how many identities a scenario creates.
    size_field: ClassVar[str] = "identities"

    def __init__(self) -> None:
        self.identities: list[Identity] = []

    def host(self, stack: LocalStack) -> str:
        raise NotImplementedError

    def create(self, stack: LocalStack, count: int, *, prefix: str) -> list[Identity]:
        """`count` identities that trust the controller's ServiceAccount (kept)."""
        self.identities = self._create(stack, count, prefix=prefix)
        return self.identities

    def _create(self, stack: LocalStack, count: int, *, prefix: str) -> list[Identity]:
        raise NotImplementedError

    def section(self, stack: LocalStack, token_path: Path) -> dict[str, Any] | None:
        """The controller's provider section, reading its token from `token_path` (None: the
        flat settings' default provider)."""
        return None

    def calls(self, stack: LocalStack) -> Calls:
        """The stand-in's calls since its last reset, by API and identity."""
        raise NotImplementedError

    def expected(self) -> dict[str, set[str]]:
        """By API, the identities that each cost exactly one call in a fill."""
        keys = {i.key for i in self.identities}
        return {api: set(keys) for api in self.apis}

    def ledger(self, stack: LocalStack) -> Iterable[tuple[str, Issued]]:
        """Every credential the stand-in issued, and for what."""
        raise NotImplementedError

    def mint(self, stack: LocalStack, identity: Identity) -> tuple[str, float]:
        """A credential of `identity` and its expiry, obtained as anyone allowed it could."""
        raise NotImplementedError

    def book(self, stack: LocalStack, *, lifetime: float) -> Book:
        return Book(lambda: self.ledger(stack), lifetime=lifetime)


class Chainguard(Cloud):
    kind = "chainguard"
    title = "cgr.dev"
    username = "_token"
    filled = chainguard_spec.FILLED_IDENTITY
    identity_word = "identity"
    credential = "token"
    issuing_api = "sts"
    apis = ("sts",)
    verifiable = True

    def host(self, stack: LocalStack) -> str:
        return stack.registry.host

    def _create(self, stack: LocalStack, count: int, *, prefix: str) -> list[Identity]:
        return [
            Identity(uid, {lab.IDENTITY_ANNOTATION: uid})
            for uid in lab.create_identities(stack, count, prefix=prefix)
        ]

    def calls(self, stack: LocalStack) -> Calls:
        return {"sts": lab.exchange_counts(stack)}

    def mint(self, stack: LocalStack, identity: Identity) -> tuple[str, float]:
        token = lab.exchange(stack, identity.key)
        return token, float(jwt.decode(token, options={"verify_signature": False})["exp"])

    def ledger(self, stack: LocalStack) -> Iterable[tuple[str, Issued]]:
        raise NotImplementedError("cgr.dev tokens are verified by their claims")


class Ecr(Cloud):
    kind = "ecr"
    title = "ECR"
    username = ecr_provider.USERNAME
    filled = ecr_spec.FILLED_IDENTITY
    identity_word = "role"
    size_field = "roles"
    credential = "password"
    issuing_api = "ecr"
    apis = ("sts", "ecr")
    audience = STS_AUDIENCE

    def host(self, stack: LocalStack) -> str:
        return stack.aws.registry_host

    def _create(self, stack: LocalStack, count: int, *, prefix: str) -> list[Identity]:
        host = self.host(stack)
        roles = [
            stack.aws.create_role(f"{prefix}-{i}", subjects=lab.CONTROLLER_USER)
            for i in range(count)
        ]
        return [Identity(r, {ecr_spec.ROLE_ARN: r, ecr_spec.REGISTRIES: host}) for r in roles]

    def section(self, stack: LocalStack, token_path: Path) -> dict[str, Any] | None:
        return {
            "kind": "ecr",
            "sts_endpoint": stack.aws.endpoint,
            "ecr_endpoint": stack.aws.endpoint,
            "ca_bundle": str(stack.ca_file),
            "token_path": str(token_path),
        }

    def calls(self, stack: LocalStack) -> Calls:
        stats = stack.aws.stats()
        return {
            "sts": _counts(stats.get("assume_role_with_web_identity")),
            "ecr": _counts(stats.get("get_authorization_token")),
        }

    def ledger(self, stack: LocalStack) -> Iterable[tuple[str, Issued]]:
        for item in stack.aws.passwords():
            yield str(item["password"]), Issued(str(item["role_arn"]), float(item["expires_at"]))

    def mint(self, stack: LocalStack, identity: Identity) -> tuple[str, float]:
        import boto3  # NB: here, so importing the benchmark does not cost boto3's 0.3 s

        aws = stack.aws
        common: dict[str, Any] = {
            "endpoint_url": aws.endpoint,
            "verify": str(stack.ca_file),
            "region_name": aws.region,
        }
        sts = boto3.client("sts", aws_access_key_id="x", aws_secret_access_key="x", **common)
        keys = sts.assume_role_with_web_identity(
            RoleArn=identity.key,
            RoleSessionName="bench",
            WebIdentityToken=_sa_token(stack, STS_AUDIENCE),
        )["Credentials"]
        ecr = boto3.client(
            "ecr",
            aws_access_key_id=keys["AccessKeyId"],
            aws_secret_access_key=keys["SecretAccessKey"],
            aws_session_token=keys["SessionToken"],
            **common,
        )
        data = ecr.get_authorization_token()["authorizationData"][0]
        user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        assert user == self.username
        assert password
        return password, data["expiresAt"].timestamp()


class Gar(Cloud):
    """One pool provider per identity (so STS is called once per identity); identities of an
    even index impersonate a service account of their own, the others use the federated
    token itself."""

    kind = "gar"
    title = "Artifact Registry"
    username = gar_provider.USERNAME
    filled = gar_spec.FILLED_IDENTITY
    identity_word = "identity"
    credential = "access token"
    issuing_api = "sts"
    apis = ("sts", "iam")
    audience = gar_provider.DEFAULT_AUDIENCE

    def __init__(self) -> None:
        super().__init__()
        #: The identity each pool provider serves, and the provider of each identity.
        self._key_of_provider: dict[str, str] = {}
        self.provider_of: dict[str, str] = {}

    def host(self, stack: LocalStack) -> str:
        return stack.gcp.registry_host

    def _create(self, stack: LocalStack, count: int, *, prefix: str) -> list[Identity]:
        gcp, host = stack.gcp, self.host(stack)
        identities = []
        for i in range(count):
            provider = gcp.create_pool_provider(
                f"{prefix}-{i}"[:32],
                allowed_audiences=[gar_provider.DEFAULT_AUDIENCE],
                allowed_subjects=[lab.CONTROLLER_USER],
            )
            asked = {gar_spec.WORKLOAD_IDENTITY_PROVIDER: provider, gar_spec.REGISTRIES: host}
            key = provider
            if i % 2 == 0:
                key = gcp.create_service_account(f"{prefix}-{i}"[:30])
                gcp.bind(key, gcp.principal(lab.CONTROLLER_USER))
                asked[gar_spec.SERVICE_ACCOUNT] = key
            self._key_of_provider[provider] = key
            self.provider_of[key] = provider
            identities.append(Identity(key, asked))
        return identities

    def expected(self) -> dict[str, set[str]]:
        keys = {i.key for i in self.identities}
        return {"sts": keys, "iam": {i.key for i in self.identities if self._impersonates(i)}}

    @staticmethod
    def _impersonates(identity: Identity) -> bool:
        return gar_spec.SERVICE_ACCOUNT in identity.annotations

    def section(self, stack: LocalStack, token_path: Path) -> dict[str, Any] | None:
        return {
            "kind": "gar",
            "sts_endpoint": stack.gcp.endpoint,
            "iamcredentials_endpoint": stack.gcp.endpoint,
            "ca_bundle": str(stack.ca_file),
            "token_path": str(token_path),
        }

    def calls(self, stack: LocalStack) -> Calls:
        stats = stack.gcp.stats()
        return {
            "sts": _counts(stats.get("token_exchange"), self._key_of_provider),
            "iam": _counts(stats.get("generate_access_token")),
        }

    def ledger(self, stack: LocalStack) -> Iterable[tuple[str, Issued]]:
        for item in stack.gcp.tokens():
            key = item.get("service_account") or item["provider"]
            yield str(item["token"]), Issued(str(key), float(item["expires_at"]))

    def mint(self, stack: LocalStack, identity: Identity) -> tuple[str, float]:
        provider = self.provider_of[identity.key]
        endpoint = stack.gcp.endpoint
        with _http(stack) as http:
            answer = http.post(
                f"{endpoint}/v1/token",
                data={
                    "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                    "audience": gar_spec.IAM_PREFIXES[0] + provider,
                    "scope": gar_provider.SCOPE,
                    "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
                    "subject_token": _sa_token(stack, gar_provider.DEFAULT_AUDIENCE),
                    "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                },
            )
            answer.raise_for_status()
            federated = str(answer.json()["access_token"])
            if not self._impersonates(identity):
                return federated, time.time() + float(answer.json()["expires_in"])
            answer = http.post(
                f"{endpoint}/v1/projects/-/serviceAccounts/{identity.key}:generateAccessToken",
                json={"scope": [gar_provider.SCOPE]},
                headers={"Authorization": f"Bearer {federated}"},
            )
            answer.raise_for_status()
        issued = {token: what for token, what in self.ledger(stack)}
        token = str(answer.json()["accessToken"])
        return token, issued[token].expires_at


class Acr(Cloud):
    kind = "acr"
    title = "ACR"
    username = acr_provider.USERNAME
    filled = acr_spec.FILLED_IDENTITY
    identity_word = "app"
    credential = "refresh token"
    issuing_api = "exchange"
    apis = ("entra", "exchange")
    audience = acr_provider.DEFAULT_AUDIENCE

    def __init__(self) -> None:
        super().__init__()
        self._key_of_client: dict[str, str] = {}

    def host(self, stack: LocalStack) -> str:
        return stack.azure.registry_host

    def _create(self, stack: LocalStack, count: int, *, prefix: str) -> list[Identity]:
        azure, host = stack.azure, self.host(stack)
        identities = []
        for i in range(count):
            client = azure.create_puller(f"{prefix}-{i}", subject=lab.CONTROLLER_USER)
            key = f"{azure.tenant}/{client}"
            self._key_of_client[client] = key
            asked = {acr_spec.TENANT_ID: azure.tenant, acr_spec.CLIENT_ID: client,
                     acr_spec.REGISTRY: host}  # fmt: skip
            identities.append(Identity(key, asked))
        return identities

    def section(self, stack: LocalStack, token_path: Path) -> dict[str, Any] | None:
        return {**stack.azure.section(), "ca_bundle": str(stack.ca_file),
                "token_path": str(token_path)}  # fmt: skip

    def calls(self, stack: LocalStack) -> Calls:
        stats = stack.azure.stats()
        return {
            "entra": _counts(stats.get("token"), self._key_of_client),
            "exchange": _counts(stats.get("exchange"), self._key_of_client),
        }

    def ledger(self, stack: LocalStack) -> Iterable[tuple[str, Issued]]:
        for item in stack.azure.refresh_tokens():
            key = f"{item['tenant']}/{item['client_id']}"
            yield str(item["token"]), Issued(key, float(item["expires_at"]))

    def mint(self, stack: LocalStack, identity: Identity) -> tuple[str, float]:
        azure = stack.azure
        tenant, client = identity.annotations[acr_spec.TENANT_ID], identity.key.split("/")[1]
        with _http(stack) as http:
            answer = http.post(
                f"{azure.endpoint}/{tenant}/oauth2/v2.0/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": client,
                    "client_assertion_type": (
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                    ),
                    "client_assertion": _sa_token(stack, acr_provider.DEFAULT_AUDIENCE),
                    "scope": acr_provider.SCOPE,
                },
            )
            answer.raise_for_status()
            answer = http.post(
                f"{azure.endpoint}/oauth2/exchange",
                data={
                    "grant_type": "access_token",
                    "service": acr_spec.service_of(self.host(stack)),
                    "tenant": tenant,
                    "access_token": str(answer.json()["access_token"]),
                },
            )
            answer.raise_for_status()
        token = str(answer.json()["refresh_token"])
        return token, float(jwt.decode(token, options={"verify_signature": False})["exp"])


#: Every cloud, in the order of a Secret's entries.
ALL: tuple[type[Cloud], ...] = (Chainguard, Ecr, Gar, Acr)


def asked(clouds: Sequence[Cloud], index: int) -> dict[str, str]:
    """The annotations of the `index`-th Secret: identity `index` mod M of each cloud."""
    annotations: dict[str, str] = {}
    for cloud in clouds:
        annotations.update(lab.identity_for(index, cloud.identities).annotations)
    return annotations


def total(counts: Mapping[str, Mapping[str, int]]) -> int:
    return sum(c["ok"] + c["error"] for c in counts.values())


def errors(counts: Mapping[str, Mapping[str, int]]) -> int:
    return sum(c["error"] for c in counts.values())


def one_each(calls: Calls, expected: Mapping[str, set[str]]) -> bool:
    """Whether every API was called exactly once, successfully, for each identity expected of
    it, and for no other."""
    return all(
        {k: v for k, v in calls.get(api, {}).items() if v["ok"] or v["error"]}
        == {key: {"ok": 1, "error": 0} for key in keys}
        for api, keys in expected.items()
    )


class Book:
    """The credentials a stand-in issued, read from its ledger again at each credential not
    yet known. `lifetime` is the seconds the stand-in gives one (its issue time is its expiry
    minus that)."""

    def __init__(
        self, ledger: Callable[[], Iterable[tuple[str, Issued]]], *, lifetime: float
    ) -> None:
        self._ledger = ledger
        self.lifetime = lifetime
        self._known: dict[str, Issued] = {}
        self._unknown: set[str] = set()
        #: How many times the ledger was read.
        self.reads = 0

    def lookup(self, credential: str) -> Issued | None:
        """What the stand-in issued `credential` for, or None if it never did."""
        if credential not in self._known and credential not in self._unknown:
            # NB: in line, on the event loop: one small admin request per new credential.
            self.refresh()
            if credential not in self._known:
                self._unknown.add(credential)
        return self._known.get(credential)

    def refresh(self) -> None:
        self.reads += 1
        for credential, issued in self._ledger():
            self._known[credential] = issued

    @property
    def unknown(self) -> int:
        """Credentials seen that the stand-in never issued."""
        return len(self._unknown)

    def token(self, credential: str) -> Token | None:
        """The credential as a watch keeps it: its expiry, issue time and digest."""
        issued = self.lookup(credential)
        if issued is None:
            return None
        return Token(
            exp=issued.expires_at, iat=issued.expires_at - self.lifetime, jti=digest(credential)
        )

    def reader(self, host: str) -> Reader:
        """Reads the credential in a Secret's entry for `host` (None: none, or not issued)."""

        def read(secret: Mapping[str, Any]) -> Token | None:
            credential = entry_password(secret, host)
            return None if credential is None else self.token(credential)

        return read


def reader(cloud: Cloud, stack: LocalStack, book: Book | None) -> Reader:
    """How a watch reads `cloud`'s entry: by its claims, or through its stand-in's `book`."""
    host = cloud.host(stack)
    if cloud.verifiable:
        return lambda secret: token_of(secret, host)
    assert book is not None, f"{cloud.title} needs its stand-in's ledger"
    return book.reader(host)


async def verify_entries(
    stack: LocalStack,
    cloud: Cloud,
    namespaces: Collection[str],
    identity_of: Mapping[str, str],
    *,
    book: Book,
    now: float,
    exclude: Collection[str] = (),
) -> Verification:
    """Check `cloud`'s entry of every Secret in `namespaces`: user and matching `auth`, a
    credential the stand-in issued for the Secret's identity (`identity_of[namespace]`), not
    expired at `now`, and none of `exclude`; count what is wrong."""
    wanted = set(namespaces)
    async with admin_http(stack) as http:
        items, _ = await list_managed(http)
    book.refresh()
    host = cloud.host(stack)
    problems: dict[str, int] = {}
    valid = checked = 0
    for item in items:
        namespace = str((item.get("metadata") or {}).get("namespace"))
        if namespace not in wanted:
            continue
        checked += 1
        problem = _entry_problem(
            item, cloud, host=host, identity=identity_of[namespace], book=book, now=now,
            exclude=exclude,
        )  # fmt: skip
        if problem is None:
            valid += 1
        else:
            problems[problem] = problems.get(problem, 0) + 1
    missing = len(wanted) - checked
    if missing:
        problems["Secret missing"] = missing
    return Verification(secrets=len(wanted), valid=valid, problems=problems)


def _entry_problem(
    secret: JSON,
    cloud: Cloud,
    *,
    host: str,
    identity: str,
    book: Book,
    now: float,
    exclude: Collection[str],
) -> str | None:
    raw = (secret.get("data") or {}).get(lab.DOCKER_CONFIG_KEY)
    try:
        entry = json.loads(base64.b64decode(raw or ""))["auths"][host]
    except (ValueError, KeyError, TypeError):
        return f"no {cloud.title} entry"
    password = entry.get("password")
    if not isinstance(password, str):
        return "no password"
    if entry.get("username") != cloud.username:
        return "wrong username"
    if base64.b64decode(entry.get("auth", "")) != f"{cloud.username}:{password}".encode():
        return "auth does not match"
    if password in exclude:
        return f"the baseline's {cloud.credential}"
    issued = book.lookup(password)
    if issued is None:
        return "not issued by the stand-in"
    if issued.identity != identity:
        return f"issued for another {cloud.identity_word}"
    if issued.expires_at <= now:
        return "expired"
    return None


def controller_env(
    stack: LocalStack, clouds: Sequence[Cloud], *, name: str
) -> tuple[dict[str, str], tuple[str, ...]]:
    """PSU_PROVIDERS for the `clouds` (besides the default provider), each reading the
    controller's projected token of its audience as the Deployment does; and those
    audiences."""
    workdir = stack.workdir / "controllers" / name / "tokens"
    sections, audiences = [], []
    for cloud in clouds:
        if cloud.audience is None:
            continue
        section = cloud.section(stack, workdir / cloud.audience / "token")
        if section is not None:
            sections.append(section)
            audiences.append(cloud.audience)
    env = {"PSU_PROVIDERS": json.dumps(sections)} if sections else {}
    return env, tuple(audiences)


def controller(
    stack: LocalStack, clouds: Sequence[Cloud], *, name: str, workers: int, **env: str
) -> ControllerProcess:
    """`lab.controller` with the providers of `clouds` on their stand-ins."""
    providers, audiences = controller_env(stack, clouds, name=name)
    process = lab.controller_with(
        stack, name=name, workers=workers, env={**env, **providers}, audiences=audiences
    )
    for audience in audiences:
        expected = stack.workdir / "controllers" / name / "tokens" / audience / "token"
        assert process.token_file(audience) == expected, "the projected token moved"
    return process
