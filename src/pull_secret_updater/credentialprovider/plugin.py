"""The kubelet credential-provider plugin: one request in, one exchange, one answer out.

The kubelet runs the plugin once per image pull whose credentials it has not cached, with a
``CredentialProviderRequest`` on stdin. With ``tokenAttributes`` in its config, the request
carries a token of the pulling Pod's ServiceAccount (bound to that Pod, with the configured
audience) and the ServiceAccount annotations the config names. One executable serves every
registry provider (``--provider``: one entry of the kubelet's config each): the annotations
and the image's registry say what to obtain (`providers.kubelet.KubeletProvider.want`), and the
provider's own exchange, the controller's, obtains it (the same requests, the same
verification, the same errors). The answer holds the registry's credentials and how long the
kubelet may keep them (`core.schedule.cache_duration` of the credential's own lifetime: a
Chainguard token's verified ``exp``, ECR's ``expiresAt``, Google's ``expires_in``, an ACR
refresh token's ``exp``).

Whose token is exchanged, for what (`plan_exchange`):

- the request carries the provider's annotations: the Pod's ServiceAccount token, for what
  they name, which must trust ``system:serviceaccount:<namespace>:<name>``;
- otherwise, for Chainguard, when the options give a node-level token file and identity (the
  fallback for plain mode, Pods without a ServiceAccount, or ServiceAccounts without the
  annotation): the file's token, re-read at each call, for the node's identity;
- otherwise the request is refused.

What the kubelet sees when it goes wrong: one line on stderr (it puts that line into the
pull's error and the Pod's Event) and exit status 2 (the request or the options) or 1 (the
exchange). No token is ever written anywhere but into the answer on stdout: messages are
built without them, and the line is scrubbed of the request's token and anything shaped like
a JWT before it is printed. Nothing else writes to stdout, which is the answer.

NB: this module is the plugin's start-up path, run at every cache miss. It loads the token
layer, the pure core and the one provider it serves, by name: never the Kubernetes client,
the controller, the settings model or the other providers (import-linter holds it to that;
``python -X importtime`` shows what it costs).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, TextIO

from pull_secret_updater.core.claims import InvalidToken, read_claims
from pull_secret_updater.core.credential import Credential
from pull_secret_updater.core.errors import BadInput
from pull_secret_updater.core.providers import Want
from pull_secret_updater.core.redaction import redact, truncate
from pull_secret_updater.core.schedule import cache_duration
from pull_secret_updater.credentialprovider.options import PROG, Options, UsageError, parse_options
from pull_secret_updater.credentialprovider.protocol import (
    MAX_REQUEST_BYTES,
    AuthConfig,
    BadRequest,
    CredentialRequest,
    CredentialResponse,
    describe_image,
    parse_request,
    render_response,
)
from pull_secret_updater.providers.chainguard.spec import IDENTITY
from pull_secret_updater.providers.kubelet import KubeletProvider, kubelet_provider
from pull_secret_updater.tokens import loop
from pull_secret_updater.tokens.blocking import (
    BlockingTransport,
    environment_proxies,
    system_ssl_context,
)
from pull_secret_updater.tokens.errors import ExchangeError, TransientExchangeError
from pull_secret_updater.tokens.http import ssl_context
from pull_secret_updater.tokens.provider import Subject, SubjectTokenSource, TokenProvider

if TYPE_CHECKING:
    import httpx2

    from pull_secret_updater.tokens.tokenfile import ProjectedFileTokenSource

__all__ = ["FAILURE", "USAGE", "Plan", "answer", "main", "plan_exchange", "run"]

#: Exit statuses: the exchange failed; the request or the options are wrong.
FAILURE = 1
USAGE = 2
#: The longest line written to stderr.
MAX_LINE = 1000

#: The subject named for the node's own token (its real subject is the file's business).
NODE = Subject(namespace="", service_account="")


@dataclass(frozen=True, slots=True)
class GivenToken:
    """The token the kubelet handed over, whatever subject is asked for."""

    token: str = field(repr=False)

    async def get(self, subject: Subject) -> str:
        return self.token


@dataclass(frozen=True, slots=True)
class NodeToken:
    """The node's token file, re-read at each call."""

    source: ProjectedFileTokenSource

    async def get(self, subject: Subject) -> str:
        return await self.source.get()


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """One exchange: what `want` names, obtained with the token from `tokens`; `who` names
    the token's owner in messages."""

    want: Want
    subject: Subject
    tokens: SubjectTokenSource = field(repr=False)
    who: str

    @property
    def identity(self) -> str:
        return self.want.identity


def plan_exchange(
    request: CredentialRequest, options: Options, provider: KubeletProvider | None = None
) -> Plan:
    """Whose token is exchanged for what (see the module docstring); raises BadRequest."""
    described = provider or kubelet_provider(options.provider)
    registry = options.registry or request.registry
    annotations = dict(request.service_account_annotations)
    key = options.identity_annotation
    primary = described.required_keys[0]
    if key != IDENTITY and key in annotations:  # chainguard's, under another key
        annotations[primary] = annotations.pop(key)
    shown = key if key != IDENTITY else primary
    token = request.service_account_token
    try:
        want = described.want(annotations, registry, options.audience)
    except BadInput as e:
        message = e.message.replace(f"annotation {primary}", f"annotation {shown}")
        raise BadRequest(f"the Pod's ServiceAccount: {message}") from None
    if want is not None:
        if token is None:
            raise BadRequest(
                f"the request has the annotation {shown} but no ServiceAccount token: set "
                "tokenAttributes.serviceAccountTokenAudience in the CredentialProviderConfig"
            )
        subject = _subject_of(token)
        who = (
            f"ServiceAccount {subject.namespace}/{subject.service_account}"
            if subject is not None
            else "the Pod's ServiceAccount"
        )
        return Plan(want=want, subject=subject or NODE, tokens=GivenToken(token), who=who)
    if options.node_token_file is not None and options.node_identity is not None:
        # NB: loaded here, for the node's fallback alone (a module fewer for every other call).
        from pull_secret_updater.tokens.tokenfile import ProjectedFileTokenSource

        node_want = described.want({primary: options.node_identity}, registry, options.audience)
        assert node_want is not None  # options checked the identity
        return Plan(
            want=node_want,
            subject=NODE,
            tokens=NodeToken(ProjectedFileTokenSource(path=options.node_token_file)),
            who=f"the node (token file {options.node_token_file})",
        )
    if token is None:
        raise BadRequest(
            "the request has no ServiceAccount token and no node fallback is configured: set "
            "tokenAttributes in the CredentialProviderConfig, or --node-token-file and "
            "--node-identity"
        )
    keys = [shown, *described.required_keys[1:]]
    raise BadRequest(
        f"the Pod's ServiceAccount has no annotation {' and '.join(keys)}: annotate it for "
        f"{described.title}, and list the key in "
        "tokenAttributes.requiredServiceAccountAnnotationKeys so that the kubelet does not call "
        "the plugin without it"
    )


def answer(
    request: CredentialRequest,
    token: Credential,
    options: Options,
    *,
    now: float,
    username: str | None = None,
) -> CredentialResponse:
    """The kubelet's answer: the registry's credentials, kept per registry until the margin
    before the credential expires."""
    return CredentialResponse(
        api_version=request.api_version,
        cache_key_type="Registry",
        auth={
            options.registry or request.registry: AuthConfig(
                username or token.username, token.token
            )
        },
        cache_duration=cache_duration(
            issued_at=token.issued_at,
            expires_at=token.expires_at,
            now=now,
            margin=options.cache_margin,
            max_interval=options.max_cache,
        ),
    )


def main() -> None:
    """The console script: the kubelet's stdin, stdout and stderr."""
    status = run(sys.argv[1:], stdin=sys.stdin.buffer, stdout=sys.stdout.buffer)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # the kubelet stopped reading: whatever was left is lost
        status = status or FAILURE
    # NB: the call is over (its answer or error line written and flushed, its connections
    # closed): the interpreter's orderly exit would only free every module's objects one by
    # one, about a tenth of a call's CPU. (--help and anything run() lets escape still end
    # the orderly way, with their own status.)
    os._exit(status)


def run(
    argv: Sequence[str],
    *,
    stdin: BinaryIO,
    stdout: BinaryIO,
    stderr: TextIO | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    """One call of the plugin; returns the exit status."""
    err = stderr if stderr is not None else sys.stderr
    _silence_library_logs()
    request: CredentialRequest | None = None
    plan: Plan | None = None
    try:
        options = parse_options(argv)
        request = parse_request(stdin.read(MAX_REQUEST_BYTES + 1))
        described = kubelet_provider(options.provider)
        _check_registry(request, options, described)
        plan = plan_exchange(request, options, described)
        token = loop.run(_exchange(plan, options, described, transport=transport, clock=clock))
        response = answer(request, token, options, now=clock(), username=described.username)
    except UsageError as e:
        return _fail(err, str(e), USAGE, request)
    except BadRequest as e:
        return _fail(err, e.message, USAGE, request)
    except ExchangeError as e:
        what = f"exchange for identity {plan.identity} as {plan.who}" if plan else "exchange"
        return _fail(err, f"{what} failed: {e.message}", FAILURE, request)
    except ValueError as e:  # a CA bundle that cannot be used
        return _fail(err, str(e), USAGE, request)
    except Exception as e:
        return _fail(err, f"unexpected {type(e).__name__}: {e}", FAILURE, request)
    stdout.write(render_response(response))
    stdout.flush()
    return 0


async def _exchange(
    plan: Plan,
    options: Options,
    described: KubeletProvider,
    *,
    transport: httpx2.AsyncBaseTransport | None,
    clock: Callable[[], float],
) -> Credential:
    module, _, name = described.exchange.partition(":")
    endpoints = {"issuer": options.issuer, **dict(options.endpoints)}
    arguments = described.arguments(endpoints, options.registry, options.audience)
    if described.keeps_keys and options.key_cache is not None:
        arguments["key_cache"] = options.key_cache
    if transport is None:
        # NB: h11 on a blocking socket, run without an event loop: a call makes one to three
        # requests, one after the other, which cost less than importing and setting up
        # httpcore2 or asyncio (see tokens.blocking and tokens.loop).
        # The proxies are the environment's (the kubelet's own, with what its
        # CredentialProviderConfig's `env` adds), read as the controller's httpx2 client does.
        transport = BlockingTransport(
            ssl_context=ssl_context(options.ca_bundle)
            if options.ca_bundle is not None
            else system_ssl_context(),
            proxies=environment_proxies(),
        )
    provider: TokenProvider = getattr(importlib.import_module(module), name)(
        sa_tokens=plan.tokens,
        ca_bundle=options.ca_bundle,
        timeout=options.timeout,
        min_lifetime=options.min_lifetime,
        clock=clock,
        transport=transport,
        **arguments,
    )
    try:
        async with loop.within(options.deadline):
            return await provider.issue(want=plan.want, subject=plan.subject)
    except TimeoutError:
        raise TransientExchangeError(
            f"no answer from the token service within the deadline of {options.deadline:g}s",
            cause="timeout",
        ) from None
    finally:
        await provider.aclose()


def _check_registry(
    request: CredentialRequest, options: Options, described: KubeletProvider
) -> None:
    hosts = described.hosts
    if hosts is not None and not hosts.fullmatch(request.registry.lower()):
        raise BadRequest(
            f"the image {describe_image(request.image)} is not on a {described.title} "
            f"registry ({described.hosts_what}): the CredentialProviderConfig's matchImages "
            f"for {PROG} --provider={described.name} should name such registries only"
        )
    if options.registry is not None and request.registry.lower() != options.registry.lower():
        raise BadRequest(
            f"the image {describe_image(request.image)} is not on the registry "
            f"{options.registry} the plugin gets tokens for: the CredentialProviderConfig's "
            f"matchImages should name {options.registry} only"
        )


def _subject_of(token: str) -> Subject | None:
    """The ServiceAccount a Kubernetes token names, unverified: for messages only (the token
    service is who verifies it)."""
    try:
        sub = read_claims(token).sub or ""
    except InvalidToken:
        return None
    parts = sub.split(":")
    if len(parts) != 4 or parts[:2] != ["system", "serviceaccount"] or not all(parts[2:]):
        return None
    return Subject(namespace=parts[2], service_account=parts[3])


def _fail(err: TextIO, message: str, code: int, request: CredentialRequest | None) -> int:
    # Last line of defence: the messages are built never to hold a token, and this makes sure.
    known = (request.service_account_token or "",) if request is not None else ()
    print(f"{PROG}: {truncate(redact(message, known=known), limit=MAX_LINE)}", file=err)
    err.flush()
    return code


def _silence_library_logs() -> None:
    # NB: stdout is the answer and stderr the error line: without a handler of its own, the
    # logging module would print library warnings (a key fetch that failed) to stderr too.
    root = logging.getLogger()
    if not any(isinstance(h, logging.NullHandler) for h in root.handlers):
        root.addHandler(logging.NullHandler())
