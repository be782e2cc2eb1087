"""STS ``AssumeRoleWithWebIdentity``, judged the way AWS judges it, then answered by moto.

moto hands out credentials for any token and any role, so the checks are made here first, in
AWS's order: the request's parameters; the token (a JWT whose ``iss`` names an IAM OIDC
provider of the role's account, signed by a key the issuer publishes, not expired, with an
``aud`` among the provider's client IDs); the role (it exists, and its trust policy allows
this provider with these claims); the duration (900 s up to the role's MaxSessionDuration).
Only then does moto mint the credentials, which are recorded so ECR can check signatures.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from xml.sax.saxutils import escape

import jwt
from aiohttp import web

from devstack.tokenservice.aws.errors import (
    AwsError,
    expired_web_identity,
    idp_rejected_claim,
    invalid_identity_token,
    not_authorized_to_assume,
    request_id,
    validation,
)
from devstack.tokenservice.aws.ledger import AWS_SECRET, AwsConfig, Ledger, Session
from devstack.tokenservice.aws.moto_backend import MotoBackend
from devstack.tokenservice.aws.trust import TrustRequest, allows
from devstack.tokenservice.identities import Identity
from devstack.tokenservice.oidc import IssuerKeys, audiences, decode, unverified_kid
from devstack.tokenservice.protocol import ApiError, rfc3339
from devstack.tokenservice.stats import IssuedTokens

MIN_DURATION: Final = 900
MAX_DURATION: Final = 43200
DEFAULT_DURATION: Final = 3600
_ROLE_ARN = re.compile(
    r"arn:aws:iam::(?P<account>\d{12}):role/(?:[\w+=,.@-]+/)*(?P<name>[\w+=,.@-]+)"
)
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")


@dataclass(frozen=True)
class AssumeRequest:
    role_arn: str
    account: str
    role_name: str
    session_name: str
    token: str
    duration: int


def parse_assume_request(form: Mapping[str, str]) -> AssumeRequest:
    for name in ("RoleArn", "RoleSessionName", "WebIdentityToken"):
        if not form.get(name):
            raise validation(
                f"Value null at '{name}' failed to satisfy constraint: Member must not be null"
            )
    role = _ROLE_ARN.fullmatch(form["RoleArn"])
    if role is None:
        raise validation(f"{form['RoleArn']} is invalid")
    if not _SESSION_NAME.fullmatch(form["RoleSessionName"]):
        raise validation("RoleSessionName must match [\\w+=,.@-]{2,64}")
    raw = form.get("DurationSeconds") or str(DEFAULT_DURATION)
    if not raw.isdigit() or not MIN_DURATION <= int(raw) <= MAX_DURATION:
        raise validation(
            f"DurationSeconds must be between {MIN_DURATION} and {MAX_DURATION}, not {raw!r}"
        )
    return AssumeRequest(
        role_arn=form["RoleArn"],
        account=role["account"],
        role_name=role["name"],
        session_name=form["RoleSessionName"],
        token=form["WebIdentityToken"],
        duration=int(raw),
    )


def issuer_host_path(issuer: str) -> str:
    """How IAM names an issuer in provider ARNs and condition keys: no scheme, no slash at
    the end."""
    return re.sub(r"^https://", "", issuer).rstrip("/")


class StsFront:
    def __init__(
        self,
        *,
        moto: MotoBackend,
        ledger: Ledger,
        issuer_keys: IssuerKeys,
        known_keys: Mapping[str, str],
        config: Callable[[], AwsConfig],
        issued: IssuedTokens,
    ) -> None:
        self._moto = moto
        self._ledger = ledger
        self._issuer_keys = issuer_keys
        #: issuer -> JWKS text, for issuers whose discovery this process cannot reach.
        self._known_keys = known_keys
        self._config = config
        self._issued = issued

    async def assume(self, form: Mapping[str, str]) -> web.Response:
        """The answer to a good request; raises ``AwsError`` for any other."""
        ask = parse_assume_request(form)
        # NB: the role is looked up in IAM while the token is verified (two requests to moto
        # at once, a third of a call's time here); what decides stays in AWS's order: a token
        # that does not verify is refused whatever the role, then the role's trust policy.
        role_lookup = asyncio.ensure_future(self._moto.role(ask.account, ask.role_name))
        role_lookup.add_done_callback(_retrieved)
        try:
            claims, provider_arn, audience = await self._verify_token(ask)
        except BaseException:
            role_lookup.cancel()
            raise
        role = await role_lookup
        if role is None:
            raise not_authorized_to_assume()
        host_path = issuer_host_path(str(claims["iss"]))
        context = {
            f"{host_path}:sub": str(claims["sub"]),
            f"{host_path}:aud": audience,
            f"{host_path}:oaud": audience,
            "sts:RoleSessionName": ask.session_name,
        }
        if not allows(role.trust_policy, TrustRequest(provider_arn, context)):
            raise not_authorized_to_assume()
        if ask.duration > role.max_session_duration:
            raise validation(
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
            )
        issued = await self._moto.assume(ask.role_arn, ask.session_name, ask.token, ask.duration)
        config = self._config()
        lifetime = min(ask.duration, config.session_lifetime_cap or ask.duration)
        expires_at = int(time.time()) + lifetime
        self._ledger.sessions.add(
            issued.access_key_id,
            Session(
                access_key_id=issued.access_key_id,
                secret_access_key=issued.secret_access_key,
                session_token=issued.session_token,
                role_arn=ask.role_arn,
                account=ask.account,
                expires_at=expires_at,
            ),
        )
        # For the leak scans: what a client must never log.
        self._issued.add(AWS_SECRET, issued.secret_access_key)
        self._issued.add(AWS_SECRET, issued.session_token)
        fields = {
            "AccessKeyId": issued.access_key_id,
            "SecretAccessKey": issued.secret_access_key,
            "SessionToken": issued.session_token,
            "Expiration": rfc3339(expires_at),
        }
        body = _answer(
            credentials=fields,
            subject=str(claims["sub"]),
            user={"Arn": issued.assumed_role_arn, "AssumedRoleId": issued.assumed_role_id},
            audience=audience,
            provider=str(claims["iss"]),
        )
        return web.Response(text=body, content_type="text/xml")

    async def _verify_token(self, ask: AssumeRequest) -> tuple[dict[str, Any], str, str]:
        """The token's claims, the provider's ARN and the audience that matched."""
        try:
            unverified = jwt.decode(ask.token, options={"verify_signature": False})
            kid = unverified_kid(ask.token)
        except (jwt.PyJWTError, ApiError):
            raise invalid_identity_token("The ID Token provided is not a valid JWT") from None
        issuer = unverified.get("iss")
        if not isinstance(issuer, str) or not issuer.startswith("https://"):
            raise invalid_identity_token("The ID Token's issuer must be an https URL")
        provider_arn = f"arn:aws:iam::{ask.account}:oidc-provider/{issuer_host_path(issuer)}"
        client_ids = await self._moto.oidc_client_ids(ask.account, provider_arn)
        if client_ids is None:
            raise invalid_identity_token(
                f"No OpenIDConnect provider found in your account for {issuer}"
            )
        identity = Identity(
            uid="", name="", issuer=issuer, issuer_keys=self._known_keys.get(issuer)
        )
        try:
            key = await self._issuer_keys.find(identity, kid)
        except ApiError as e:
            if e.status >= 500:  # the issuer's discovery could not be fetched
                raise AwsError("IDPCommunicationError", e.message) from None
            raise invalid_identity_token(
                "Couldn't retrieve verification key from your identity provider"
            ) from None
        try:
            claims = decode(ask.token, key.key, algorithm=key.algorithm_name, leeway=0)
        except ApiError as e:
            if "expired" in e.message:
                raise expired_web_identity("Token expired: the current time is after exp") from None
            raise invalid_identity_token(
                f"The ID Token could not be verified: {e.message}"
            ) from None
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise idp_rejected_claim("The ID Token has no subject")
        matching = [a for a in audiences(claims) if a in client_ids]
        if not matching:
            raise invalid_identity_token("Incorrect token audience")
        return claims, provider_arn, matching[0]


def _answer(
    *,
    credentials: Mapping[str, str],
    subject: str,
    user: Mapping[str, str],
    audience: str,
    provider: str,
) -> str:
    def element(name: str, value: str) -> str:
        return f"<{name}>{escape(value)}</{name}>"

    return (
        '<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        "<AssumeRoleWithWebIdentityResult>"
        f"<Credentials>{''.join(element(k, v) for k, v in credentials.items())}</Credentials>"
        f"{element('SubjectFromWebIdentityToken', subject)}"
        f"<AssumedRoleUser>{''.join(element(k, v) for k, v in user.items())}</AssumedRoleUser>"
        f"{element('Audience', audience)}{element('Provider', provider)}"
        "</AssumeRoleWithWebIdentityResult>"
        f"<ResponseMetadata>{element('RequestId', request_id())}</ResponseMetadata>"
        "</AssumeRoleWithWebIdentityResponse>"
    )


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Marks a look-up whose result nobody awaits (the token was refused first) as seen."""
    if not task.cancelled():
        task.exception()
