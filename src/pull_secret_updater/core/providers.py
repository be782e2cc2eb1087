"""What a registry provider tells the pure core: which annotations ask for it, and for what.

A registry provider (Chainguard, ECR, Artifact Registry, ...) is one package under
`pull_secret_updater.providers`. Its pure half, `ProviderSpec`, is all the decision needs:

- the annotations it owns (every key under its `annotation_prefix`) and how their values are
  read and validated into a `Want` (`wants`); a value it cannot accept raises `BadInput`
  naming the annotation, never quoting the whole value;
- the dockerconfig user name its credentials are written with;
- whether a credential found in a Secret can be verified offline (`verifiable`); if not, it is
  trusted only while byte-identical to one this process obtained.

The exchange itself is the I/O half (`tokens.provider.TokenProvider`), which the decision
never calls. Core, runtime, kube and the plugin see providers only through these two
interfaces and the table in `pull_secret_updater.providers`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from pull_secret_updater.core.annotations import validate_value

#: The suffix of every provider's status annotation naming what its entry was filled for.
FILLED_IDENTITY = "filled-identity"


@dataclass(frozen=True, slots=True, kw_only=True)
class Want:
    """What one provider's annotations on a Secret ask for.

    `identity` is what the exchange assumes (an identity UID, a role ARN...); `registries` the
    hosts whose entries are written, the first one being where the credential is read back;
    `scope` whatever else decides the exchange (a region, say), "" when nothing does. Two
    Secrets with equal (provider, identity, scope) share one exchange.
    """

    provider: str
    identity: str
    registries: tuple[str, ...]
    scope: str = ""

    def __post_init__(self) -> None:
        if not self.registries:
            raise ValueError("a Want names at least one registry host")

    @property
    def exchange_key(self) -> tuple[str, str, str]:
        return (self.provider, self.identity, self.scope)


class ProviderSpec(Protocol):
    """The pure half of a registry provider (see the module docstring)."""

    @property
    def name(self) -> str:
        """Short, lower-case, stable: used in metrics, policies and settings."""
        ...

    @property
    def username(self) -> str:
        """The user name written beside the credential in each registry entry."""
        ...

    @property
    def annotation_prefix(self) -> str:
        """Every annotation key this provider reads or writes starts with it."""
        ...

    @property
    def verifiable(self) -> bool:
        """Whether `TokenProvider.verify` can vouch for a credential found in a Secret."""
        ...

    def wants(self, annotations: Mapping[str, str]) -> Want | None:
        """What the annotations ask of this provider; None when they do not ask.

        Raises `core.errors.BadInput` (reason BadAnnotation) for a value it cannot accept.
        """
        ...


def filled_identity_key(spec: ProviderSpec) -> str:
    """The status annotation naming the identity the provider's entry was filled for."""
    return spec.annotation_prefix + FILLED_IDENTITY


@dataclass(frozen=True, kw_only=True)
class IdentitySpec:
    """A provider asked by one annotation, `<annotation_prefix>identity`, for one registry.

    Each character of the identity must match `allowed` (`what` says which are, in words).
    """

    name: str
    username: str
    annotation_prefix: str
    verifiable: bool
    registry: str
    allowed: re.Pattern[str]
    what: str

    @property
    def identity_key(self) -> str:
        return self.annotation_prefix + "identity"

    def wants(self, annotations: Mapping[str, str]) -> Want | None:
        key = self.identity_key
        if key not in annotations:
            return None
        return self.want_for(
            validate_value(key, annotations[key], allowed=self.allowed, what=self.what)
        )

    def want_for(self, identity: str) -> Want:
        """What asking for `identity` (already validated) means: its registry, its name."""
        return Want(provider=self.name, identity=identity, registries=(self.registry,))
