"""What the kubelet credential-provider plugin needs of a provider, as plain values.

The plugin is one executable for every provider; the kubelet's config has one entry per
provider, each running it with ``--provider=<name>``. For that entry the config generator
needs the token audience, the ServiceAccount annotation keys the kubelet must pass, the images
it serves; for one call the plugin needs what the Pod's ServiceAccount asks for (`want`, from
its annotations and the image's registry) and how to build the provider's exchange.

Each provider describes itself in its own ``kubelet`` module (`KubeletProvider`), loaded by
name (`kubelet_provider`) so that a call loads that provider alone: its exchange is named by
a dotted path and imported only when the plugin builds it. Pure: the config generator, which
must not load the token layer, reads the same descriptions.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pull_secret_updater.core.providers import Want

__all__ = ["KUBELET_PROVIDERS", "Endpoint", "KubeletProvider", "kubelet_provider"]

#: Every provider the plugin serves, in the order the config generator writes them.
KUBELET_PROVIDERS = ("chainguard", "ecr", "gar", "acr")


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """An endpoint the plugin's ``--endpoint=<key>=<url>`` overrides; `default` is what it is
    without the flag (None: derived, e.g. from the region or the registry)."""

    key: str
    default: str | None
    what: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KubeletProvider:
    """One provider, as the plugin and its config generator see it.

    `want` reads the ServiceAccount's annotations (only those the config passes) and the
    image's registry host into what to exchange for; it returns None when the annotations do
    not ask for this provider and raises `core.errors.BadInput` when they ask wrongly.
    `exchange` is ``module:Class`` of the provider's `TokenProvider`; `arguments` gives the
    keyword arguments of that class beyond those every exchange takes (the endpoints by
    `Endpoint.argument`, the registry the plugin is limited to, the token audience).
    """

    name: str
    title: str
    username: str
    audience: str
    required_keys: tuple[str, ...]
    optional_keys: tuple[str, ...] = ()
    match_images: tuple[str, ...]
    #: The one registry host the provider serves by default (None: any of `hosts`).
    registry: str | None = None
    #: The registry hosts the provider serves (lower case, a port allowed), and in words.
    hosts: re.Pattern[str] | None = None
    hosts_what: str = ""
    endpoints: tuple[Endpoint, ...] = ()
    #: Whether the exchange verifies with published keys it can keep between calls (its
    #: `key_cache` argument, the plugin's ``--key-cache``).
    keeps_keys: bool = False
    want: Callable[[Mapping[str, str], str, str], Want | None] = field(repr=False)
    exchange: str
    arguments: Callable[[Mapping[str, str], str | None, str], dict[str, object]] = field(repr=False)

    def endpoint(self, key: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.key == key), None)


def kubelet_provider(name: str) -> KubeletProvider:
    """The provider `name`'s description; raises ValueError for an unknown name."""
    if name not in KUBELET_PROVIDERS:
        raise ValueError(f"unknown provider {name!r}; one of {', '.join(KUBELET_PROVIDERS)}")
    # NB: by name, so that a call loads the one provider it serves (and the import rules see
    # no provider depending on another through this table).
    module = importlib.import_module(f"pull_secret_updater.providers.{name}.kubelet")
    described: KubeletProvider = module.KUBELET
    return described
