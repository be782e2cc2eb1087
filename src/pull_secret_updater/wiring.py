"""The components, built from settings: the one place that reads settings for `run` and `check`.

It decides three things the rest of the code only receives:

- whose service-account token is exchanged for a Secret (`subject_for`): the controller's
  own, or with ``token_subject: namespace`` a fixed-name ServiceAccount in the Secret's own
  namespace;
- which identities each namespace may use (`load_policy`): the policy file, or everything
  where the token service itself confines identities to namespaces, or everything because the
  operator said so (``allow_any_identity``). With the controller's own token and neither a
  policy nor that explicit choice, the controller refuses to start: anyone who can create a
  Secret with a managed name could otherwise obtain any identity's tokens, and that must never
  be the silent default;
- the registry providers (`providers`), each built from its settings section with
  Kubernetes tokens of the audience it asks for: the controller's own from its projected file
  or TokenRequest, a namespace's from TokenRequest.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx2
import yaml
from lightkube import AsyncClient

from pull_secret_updater.core.errors import BadInput
from pull_secret_updater.core.policy import ALLOW_ALL, Policy, parse_policy
from pull_secret_updater.providers.base import BuildContext
from pull_secret_updater.providers.chainguard.exchange import ChainguardSTS
from pull_secret_updater.providers.chainguard.section import ChainguardSection
from pull_secret_updater.providers.table import DEFAULT
from pull_secret_updater.settings import Settings
from pull_secret_updater.tokens.provider import Subject, TokenProvider
from pull_secret_updater.tokens.satoken import (
    MIN_EXPIRATION_SECONDS,
    ProjectedFileTokenSource,
    ServiceAccountTokenSource,
    SubjectTokens,
    SubjectTokenSource,
    TokenRequestTokenSource,
)


class ConfigurationError(Exception):
    """The settings are valid one by one but describe a controller that must not run."""


def own_subject(settings: Settings) -> Subject:
    """The controller's own ServiceAccount."""
    return Subject(namespace=settings.namespace, service_account=settings.service_account)


def subject_for(settings: Settings) -> Callable[[str], Subject]:
    """The subject whose token is exchanged for a Secret in a given namespace."""
    if settings.token_subject == "namespace":
        name = settings.namespace_service_account
        return lambda namespace: Subject(namespace=namespace, service_account=name)
    own = own_subject(settings)
    return lambda namespace: own


def load_policy(settings: Settings) -> Policy:
    """The identity policy in force; raises ConfigurationError (see the module docstring)."""
    if settings.policy_file is not None:
        return _read_policy(settings.policy_file)
    if settings.token_subject == "namespace" or settings.allow_any_identity:
        return ALLOW_ALL
    raise ConfigurationError(
        "no identity policy: with token_subject controller, any namespace could obtain the "
        "tokens of any identity that trusts the controller. Choose one: set policy_file "
        "(PSU_POLICY_FILE) to say which namespace may use which identity, or token_subject "
        "namespace (PSU_TOKEN_SUBJECT) for identities that each trust one namespace, or "
        "allow_any_identity (PSU_ALLOW_ANY_IDENTITY=true) to allow it deliberately"
    )


def own_tokens(
    settings: Settings,
    *,
    client: Callable[[], AsyncClient],
    audience: str | None = None,
    token_path: Path | None = None,
    expiration_seconds: int | None = None,
) -> ServiceAccountTokenSource:
    """The controller's own token with `audience`: the projected file at `token_path`, or
    TokenRequest (``client`` is called only then). Defaults: the flat settings'."""
    if settings.token_source == "file":
        path = token_path if token_path is not None else settings.token_path
        return ProjectedFileTokenSource(path=path)
    return TokenRequestTokenSource(
        client(),
        namespace=settings.namespace,
        service_account=settings.service_account,
        audience=audience or settings.sa_audience,
        expiration_seconds=expiration_seconds or MIN_EXPIRATION_SECONDS,
    )


def subject_tokens(
    settings: Settings,
    *,
    client: Callable[[], AsyncClient],
    audience: str | None = None,
    token_path: Path | None = None,
    expiration_seconds: int | None = None,
) -> SubjectTokens:
    """Service-account tokens per subject with `audience` (``client`` is called only when
    one is requested). Defaults: the flat settings' audience and token file."""
    return SubjectTokens(
        own=own_subject(settings),
        own_source=own_tokens(
            settings,
            client=client,
            audience=audience,
            token_path=token_path,
            expiration_seconds=expiration_seconds,
        ),
        client=client if settings.token_subject == "namespace" else None,
        audience=audience or settings.sa_audience,
        expiration_seconds=expiration_seconds or MIN_EXPIRATION_SECONDS,
    )


def _subject_tokens_factory(
    settings: Settings, *, client: Callable[[], AsyncClient]
) -> Callable[..., SubjectTokenSource]:
    """Kubernetes tokens of the audience (and projected file) each provider asks for."""

    def tokens(
        *, audience: str, token_path: Path | None, expiration_seconds: int | None = None
    ) -> SubjectTokenSource:
        if settings.token_source == "file" and token_path is None:
            raise ValueError(
                f"token_source is file, but the provider for audience {audience} names no "
                "token_path: give it one, with a projected token of that audience"
            )
        return subject_tokens(
            settings,
            client=client,
            audience=audience,
            token_path=token_path,
            expiration_seconds=expiration_seconds,
        )

    return tokens


def providers(
    settings: Settings,
    *,
    client: Callable[[], AsyncClient],
    transport: httpx2.AsyncBaseTransport | None = None,
) -> dict[str, TokenProvider]:
    """Every configured registry provider by name; raises ValueError for an unusable CA
    bundle."""
    context = BuildContext(
        subject_tokens=_subject_tokens_factory(settings, client=client),
        timeout=settings.exchange_timeout,
        min_lifetime=settings.min_token_lifetime,
        transport=transport,
    )
    built: dict[str, TokenProvider] = {}
    for section in settings.sections:
        provider = section.build(context)
        built[provider.spec.name] = provider
    return built


def token_service(
    settings: Settings,
    *,
    sa_tokens: SubjectTokenSource,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> ChainguardSTS:
    """The default provider's token service client, with `sa_tokens` (the `check` command's
    recording source); raises ValueError for an unusable CA bundle."""
    section = next(s for s in settings.sections if isinstance(s, ChainguardSection))
    context = BuildContext(
        subject_tokens=lambda audience, token_path, expiration_seconds=None: sa_tokens,
        timeout=settings.exchange_timeout,
        min_lifetime=settings.min_token_lifetime,
        transport=transport,
    )
    return section.build(context)


def provider_named(
    settings: Settings,
    name: str,
    *,
    client: Callable[[], AsyncClient],
    wrap: Callable[[SubjectTokenSource], SubjectTokenSource],
    transport: httpx2.AsyncBaseTransport | None = None,
) -> TokenProvider:
    """The configured provider `name`, its Kubernetes tokens (of its own audience and file)
    passed through `wrap` (the `check` command records their claims); raises ValueError when
    it is not configured or its CA bundle is unusable."""
    section = next((s for s in settings.sections if s.spec().name == name), None)
    if section is None:
        raise ValueError(
            f'provider {name} is not configured: add a {{"kind": "{name}"}} entry to '
            "providers (PSU_PROVIDERS)"
        )
    tokens = _subject_tokens_factory(settings, client=client)
    context = BuildContext(
        subject_tokens=lambda *, audience, token_path, expiration_seconds=None: wrap(
            tokens(audience=audience, token_path=token_path, expiration_seconds=expiration_seconds)
        ),
        timeout=settings.exchange_timeout,
        min_lifetime=settings.min_token_lifetime,
        transport=transport,
    )
    return section.build(context)


def _read_policy(path: Path) -> Policy:
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigurationError(f"cannot read the policy file {path}: {e}") from None
    try:
        return parse_policy(document, default_provider=DEFAULT)
    except (BadInput, ValueError) as e:
        raise ConfigurationError(f"invalid policy file {path}: {e}") from None
