"""The kubelet credential-provider plugin: one request in, one exchange, one answer out.

The kubelet runs the plugin once per image pull whose credentials it has not cached, with a
``CredentialProviderRequest`` on stdin. With ``tokenAttributes`` in its config, the request
carries a token of the pulling Pod's ServiceAccount (bound to that Pod, with the configured
audience) and the ServiceAccount's identity annotation. The plugin exchanges that token at the
token service for a registry token of that identity, with the controller's own client
(`providers.chainguard.exchange.ChainguardSTS`: the same request, the same verification of the
returned token against the token service's published keys, the same errors), and answers with the
registry's credentials and how long the kubelet may keep them (`core.schedule.cache_duration`
of the verified token).

Whose token is exchanged, for which identity (`plan_exchange`):

- the request carries the identity annotation: the Pod's ServiceAccount token, for that
  identity, which must trust ``system:serviceaccount:<namespace>:<name>``;
- otherwise, when the options give a node-level token file and identity (the fallback for
  plain mode, Pods without a ServiceAccount, or ServiceAccounts without the annotation): the
  file's token, re-read at each call, for the node's identity;
- otherwise the request is refused.

What the kubelet sees when it goes wrong: one line on stderr (it puts that line into the
pull's error and the Pod's Event) and exit status 2 (the request or the options) or 1 (the
exchange). No token is ever written anywhere but into the answer on stdout: messages are
built without them, and the line is scrubbed of the request's token and anything shaped like
a JWT before it is printed. Nothing else writes to stdout, which is the answer.

NB: this module is the plugin's start-up path, run at every cache miss. It loads the token
layer and the pure core only: never the Kubernetes client, the controller or the settings
model (import-linter holds it to that; ``python -X importtime`` shows what it costs).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, TextIO

import httpx2

from pull_secret_updater.core.claims import InvalidToken, read_claims
from pull_secret_updater.core.credential import Credential
from pull_secret_updater.core.errors import BadInput
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
from pull_secret_updater.providers.chainguard import USERNAME
from pull_secret_updater.providers.chainguard.exchange import ChainguardSTS
from pull_secret_updater.providers.chainguard.spec import IDENTITY, validate_identity
from pull_secret_updater.tokens.errors import ExchangeError, TransientExchangeError
from pull_secret_updater.tokens.provider import Subject, SubjectTokenSource
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
    """One exchange: `identity`'s token, obtained with the token from `tokens`; `who` names
    the token's owner in messages."""

    identity: str
    subject: Subject
    tokens: SubjectTokenSource = field(repr=False)
    who: str


def plan_exchange(request: CredentialRequest, options: Options) -> Plan:
    """Whose token is exchanged for which identity (see the module docstring); raises
    BadRequest."""
    key = options.identity_annotation
    value = request.service_account_annotations.get(key)
    token = request.service_account_token
    if value is not None:
        if token is None:
            raise BadRequest(
                f"the request has the annotation {key} but no ServiceAccount token: set "
                "tokenAttributes.serviceAccountTokenAudience in the CredentialProviderConfig"
            )
        try:
            identity = validate_identity(value)
        except BadInput as e:
            message = e.message.replace(f"annotation {IDENTITY}", f"annotation {key}")
            raise BadRequest(f"the Pod's ServiceAccount: {message}") from None
        subject = _subject_of(token)
        who = (
            f"ServiceAccount {subject.namespace}/{subject.service_account}"
            if subject is not None
            else "the Pod's ServiceAccount"
        )
        return Plan(identity=identity, subject=subject or NODE, tokens=GivenToken(token), who=who)
    if options.node_token_file is not None and options.node_identity is not None:
        return Plan(
            identity=options.node_identity,
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
    raise BadRequest(
        f"the Pod's ServiceAccount has no annotation {key}: annotate it with the identity's "
        "UID, and list the key in tokenAttributes.requiredServiceAccountAnnotationKeys so that "
        "the kubelet does not call the plugin without it"
    )


def answer(
    request: CredentialRequest, token: Credential, options: Options, *, now: float
) -> CredentialResponse:
    """The kubelet's answer: the registry's credentials, kept per registry until the margin
    before the verified token expires."""
    return CredentialResponse(
        api_version=request.api_version,
        cache_key_type="Registry",
        auth={options.registry: AuthConfig(USERNAME, token.token)},
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
    sys.exit(run(sys.argv[1:], stdin=sys.stdin.buffer, stdout=sys.stdout.buffer))


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
        _check_registry(request, options)
        plan = plan_exchange(request, options)
        token = asyncio.run(_exchange(plan, options, transport=transport, clock=clock))
        response = answer(request, token, options, now=clock())
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
    *,
    transport: httpx2.AsyncBaseTransport | None,
    clock: Callable[[], float],
) -> Credential:
    async with ChainguardSTS(
        sa_tokens=plan.tokens,
        issuer=options.issuer,
        audience=options.registry,
        ca_bundle=options.ca_bundle,
        timeout=options.timeout,
        min_lifetime=options.min_lifetime,
        clock=clock,
        transport=transport,
    ) as sts:
        try:
            async with asyncio.timeout(options.deadline):
                want = sts.spec.want_for(plan.identity)
                return await sts.issue(want=want, subject=plan.subject)
        except TimeoutError:
            raise TransientExchangeError(
                f"no answer from the token service within the deadline of {options.deadline:g}s",
                cause="timeout",
            ) from None


def _check_registry(request: CredentialRequest, options: Options) -> None:
    if request.registry.lower() != options.registry.lower():
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
