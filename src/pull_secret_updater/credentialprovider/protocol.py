"""The kubelet's exec credential-provider protocol, as values: bytes in, bytes out, no I/O.

The kubelet writes a ``CredentialProviderRequest`` to the plugin's stdin and reads a
``CredentialProviderResponse`` from its stdout. Field names and rules are those of
``k8s.io/kubelet/pkg/apis/credentialprovider/v1`` (Kubernetes 1.36):

- request: ``image``; ``serviceAccountToken`` and ``serviceAccountAnnotations`` only when the
  provider's config has ``tokenAttributes`` (the Pod's ServiceAccount token, bound to the Pod,
  with the configured audience, and the annotations the config names);
- response: ``cacheKeyType`` (``Image``, ``Registry`` or ``Global``; anything else and the
  kubelet discards the answer), ``cacheDuration`` (a Go duration; absent: the config's
  ``defaultCacheDuration``; ``0s``: not cached), ``auth`` (match-image pattern -> username and
  password);
- the response must carry the request's ``apiVersion``. v1alpha1 and v1beta1 have the same
  shape; service-account tokens come only with v1.

NB: a request holds a service-account token. Nothing here keeps the raw bytes in an
exception: the JSON decoder's error (whose ``doc`` is the whole request) is never chained,
and no message quotes a value from the request other than names checked to be harmless.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "API_VERSIONS",
    "MAX_REQUEST_BYTES",
    "AuthConfig",
    "BadRequest",
    "CacheKeyType",
    "CredentialRequest",
    "CredentialResponse",
    "describe_image",
    "format_duration",
    "parse_request",
    "registry_of",
    "render_response",
]

API_GROUP = "credentialprovider.kubelet.k8s.io"
API_VERSION = f"{API_GROUP}/v1"
API_VERSIONS = (API_VERSION, f"{API_GROUP}/v1beta1", f"{API_GROUP}/v1alpha1")
REQUEST_KIND = "CredentialProviderRequest"
RESPONSE_KIND = "CredentialProviderResponse"

#: A request is an image name, a token and a few annotations: a few kilobytes.
MAX_REQUEST_BYTES = 1024 * 1024

CacheKeyType = Literal["Image", "Registry", "Global"]

# What an image reference may look like, loosely: enough to quote it in a message safely.
_PRINTABLE = re.compile(r"[A-Za-z0-9._:/@+-]{1,500}")
_API_VERSION_LIKE = re.compile(r"[a-z0-9.-]{1,100}/[a-z0-9]{1,20}")


class BadRequest(Exception):
    """The kubelet's request cannot be used; the message never holds the token."""

    def __init__(self, message: str, /) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialRequest:
    """What the kubelet asks for. `service_account_token` is None in plain mode."""

    api_version: str
    image: str
    service_account_token: str | None = field(default=None, repr=False)
    service_account_annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def registry(self) -> str:
        return registry_of(self.image)


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """A username and password for the registries matching an ``auth`` key."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialResponse:
    """What the plugin answers. `cache_duration` in whole seconds; None leaves it to the
    config's ``defaultCacheDuration``."""

    api_version: str
    cache_key_type: CacheKeyType
    auth: Mapping[str, AuthConfig]
    cache_duration: int | None = None

    def __post_init__(self) -> None:
        if self.api_version not in API_VERSIONS:
            raise ValueError(f"unsupported apiVersion {self.api_version!r}")
        if self.cache_duration is not None and self.cache_duration < 0:
            raise ValueError("cache_duration must be >= 0")


def parse_request(raw: bytes) -> CredentialRequest:
    """The request the kubelet wrote; raises BadRequest."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise BadRequest(f"the request is larger than {MAX_REQUEST_BYTES} bytes")
    document, problem = _load(raw)
    if problem is not None:
        raise BadRequest(problem)
    if not isinstance(document, dict):
        raise BadRequest("the request is not a JSON object")
    api_version = document.get("apiVersion")
    if api_version not in API_VERSIONS:
        shown = (
            api_version
            if isinstance(api_version, str) and _API_VERSION_LIKE.fullmatch(api_version)
            else "?"
        )
        raise BadRequest(
            f"unsupported apiVersion {shown!r}; expected one of {', '.join(API_VERSIONS)}"
        )
    kind = document.get("kind", REQUEST_KIND)
    if kind != REQUEST_KIND:
        raise BadRequest(f"the request's kind is not {REQUEST_KIND}")
    image = document.get("image")
    if not isinstance(image, str) or not image.strip():
        raise BadRequest("the request names no image")
    token = document.get("serviceAccountToken")
    if token is not None and not isinstance(token, str):
        raise BadRequest("the request's serviceAccountToken is not a string")
    if token and not (token.isascii() and token.isprintable()):
        # A Kubernetes token is a JWT: printable ASCII. Anything else could not even be sent.
        raise BadRequest("the request's serviceAccountToken is not a token (not printable ASCII)")
    annotations = document.get("serviceAccountAnnotations")
    if annotations is None:
        annotations = {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise BadRequest("the request's serviceAccountAnnotations is not a map of strings")
    return CredentialRequest(
        api_version=api_version,
        image=image.strip(),
        service_account_token=token or None,
        service_account_annotations=dict(annotations),
    )


def render_response(response: CredentialResponse) -> bytes:
    """The response as the kubelet reads it: one JSON object."""
    document: dict[str, object] = {
        "apiVersion": response.api_version,
        "kind": RESPONSE_KIND,
        "cacheKeyType": response.cache_key_type,
    }
    if response.cache_duration is not None:
        document["cacheDuration"] = format_duration(response.cache_duration)
    document["auth"] = {
        pattern: {"username": auth.username, "password": auth.password}
        for pattern, auth in response.auth.items()
    }
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


def format_duration(seconds: int) -> str:
    """A whole number of seconds as a Go duration (``metav1.Duration``): ``3300s``."""
    if seconds < 0:
        raise ValueError("a duration must be >= 0")
    return f"{seconds}s"


def registry_of(image: str) -> str:
    """The registry part of an image reference, as the kubelet computes its ``Registry``
    cache key: everything before the first ``/``."""
    return image.split("/", 1)[0]


def describe_image(image: str) -> str:
    """The image for a message, or a placeholder if it holds anything odd."""
    return image if _PRINTABLE.fullmatch(image) else "(unprintable image reference)"


def _load(raw: bytes) -> tuple[object, str | None]:
    # NB: returned, not raised in `except`: JSONDecodeError.doc is the request, token included.
    try:
        return json.loads(raw.decode("utf-8")), None
    except UnicodeDecodeError:
        problem = "the request is not UTF-8"
    except RecursionError:
        problem = "the request is nested too deeply"
    except ValueError:
        problem = "the request is not JSON" if raw.strip() else "the request is empty"
    return None, problem
