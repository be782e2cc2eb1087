"""Settings of the registry providers: the default one's flat fields and the others' sections.

The flat fields (`issuer`, `registry`, `sa_audience`, `token_path`, `ca_bundle`) are the
Chainguard provider's section as it was configured before there were several providers, and
stay its default entry; `providers` adds the others (or replaces the default with an explicit
`{"kind": "chainguard", ...}` entry). Each provider's own fields are documented in its
section (`pull_secret_updater.providers.<name>.section`).

`PSU_PROVIDERS_<NAME>` variables (any name) each add a section, or a list of them, to
`providers`: one per provider, so that kustomize components, each turning one provider on,
combine in any number and order where a single `PSU_PROVIDERS` could be set by one alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from pull_secret_updater.providers import chainguard
from pull_secret_updater.providers.base import ProviderSection
from pull_secret_updater.providers.hosts import check_https_url, check_registry_host
from pull_secret_updater.providers.table import SECTIONS, ChainguardSection, parse_section
from pull_secret_updater.settings.checks import Section


class RegistrySettings(Section):
    """Which registries are served, and how their token services are reached."""

    issuer: str = Field(
        default=chainguard.DEFAULT_ISSUER,
        description=(
            "Base URL of the security token service that exchanges the controller's "
            "service-account token for registry tokens (POST <issuer>/sts/exchange). Must be "
            "https; a bare host is taken as https://<host>. Default: https://issuer.enforce.dev."
        ),
    )
    registry: str = Field(
        default=chainguard.DEFAULT_REGISTRY,
        description=(
            "Registry host the tokens are for: sent as the exchange's aud parameter and used "
            "as the key of the entry written under auths in each Secret. Default: cgr.dev."
        ),
    )
    providers: Annotated[list[ProviderSection], NoDecode] = Field(
        default_factory=list,
        description=(
            "Registry providers besides the default one, as a JSON list of sections, each "
            f"with a kind ({', '.join(sorted(SECTIONS))}) and that provider's fields, e.g. "
            '[{"kind": "fake", "registry": "registry.example"}]. The flat settings issuer, '
            "registry, sa_audience, token_path and ca_bundle are the chainguard entry unless "
            "the list has one. One entry per kind. Each variable PSU_PROVIDERS_<NAME> (any "
            "name) adds one more section, or a JSON list of them, so that several can be set "
            "independently (one kustomize component per provider). "
            "Default: none (Chainguard alone)."
        ),
    )
    token_path: Path = Field(
        default=Path(chainguard.DEFAULT_TOKEN_PATH),
        description=(
            "File holding the controller's projected service-account token (used when "
            "token_source is file); re-read at every exchange. "
            "Default: /var/run/chainguard/oidc/oidc-token."
        ),
    )
    token_source: Literal["file", "tokenrequest"] = Field(
        default="file",
        description=(
            "Where the controller's own service-account token comes from: file (a projected "
            "volume at token_path) or tokenrequest (the TokenRequest API, for running outside "
            "a pod; needs create on serviceaccounts/token). Default: file."
        ),
    )
    sa_audience: str = Field(
        default=chainguard.DEFAULT_AUDIENCE,
        description=(
            "Audience requested for the service-account token when token_source is "
            "tokenrequest; the identity must trust this audience. Default: issuer.enforce.dev."
        ),
    )
    ca_bundle: Path | None = Field(
        default=None,
        description=(
            "PEM file of CA certificates to verify the token service with, instead of the "
            "system trust store. TLS is always verified. Default: none (system trust store)."
        ),
    )

    @field_validator("providers", mode="before")
    @classmethod
    def _parse_providers(cls, value: object) -> object:
        return _sections(value, single=False)

    @model_validator(mode="before")
    @classmethod
    def _add_provider_variables(cls, data: Any) -> Any:
        parts = provider_variables(os.environ)
        if not parts or not isinstance(data, dict):
            return data
        try:
            listed = _sections(data.get("providers", []), single=False)
        except ValueError:
            return data  # the field's own check says what is wrong with it
        added = []
        for name, value in parts:
            try:
                added += _sections(value, single=True)
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
        return {**data, "providers": [*listed, *added]}

    @field_validator("issuer")
    @classmethod
    def _check_issuer(cls, value: str) -> str:
        return check_https_url(value, example=chainguard.DEFAULT_ISSUER)

    @field_validator("registry")
    @classmethod
    def _check_registry(cls, value: str) -> str:
        return check_registry_host(value)

    @property
    def sections(self) -> tuple[ProviderSection, ...]:
        """Every provider's section: the default one from the flat settings unless `providers`
        has an entry of its kind, then the entries of `providers`."""
        listed = tuple(self.providers)
        if any(isinstance(section, ChainguardSection) for section in listed):
            return listed
        default = ChainguardSection(
            issuer=self.issuer,
            registry=self.registry,
            sa_audience=self.sa_audience,
            token_path=self.token_path,
            ca_bundle=self.ca_bundle,
        )
        return (default, *listed)

    @model_validator(mode="after")
    def _check_providers(self) -> Self:
        kinds = [section.spec().name for section in self.sections]
        if len(set(kinds)) != len(kinds):
            raise ValueError(
                "providers: one entry per kind (counting those of the PSU_PROVIDERS_<NAME> "
                "variables)"
            )
        return self


#: Variables that each add provider sections to `providers` (`provider_variables`).
PROVIDER_VARIABLES_PREFIX = "PSU_PROVIDERS_"


def provider_variables(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """The `PSU_PROVIDERS_<NAME>` variables set in `environ`, sorted by name, with values."""
    return sorted(
        (name, value)
        for name, value in environ.items()
        if name.upper().startswith(PROVIDER_VARIABLES_PREFIX)
        and len(name) > len(PROVIDER_VARIABLES_PREFIX)
    )


def _sections(value: object, *, single: bool) -> list[ProviderSection]:
    """Provider sections from a JSON list (or, if `single`, one JSON object) or a list."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        try:
            value = json.loads(text)
        except ValueError:
            shape = "section or list of them" if single else "list of provider sections"
            raise ValueError(f"is not a JSON {shape}") from None
    if single and isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise ValueError("must be a list of provider sections")
    return [parse_section(item) for item in value]
