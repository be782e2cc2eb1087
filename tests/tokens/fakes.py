"""Small fakes shared by the token tests: a clock, token sources, JWTs, a provider."""

from __future__ import annotations

import asyncio
import base64
import json
import traceback
from dataclasses import dataclass, field

import jwt

from pull_secret_updater.tokens import IssuedToken

#: A stand-in service-account token: JWT-shaped, as the real one is.
SA_TOKEN = jwt.encode(
    {"iss": "https://kubernetes.default.svc.cluster.local", "sub": "system:serviceaccount:x:y"},
    "service-account-signing-key-for-tests",
    algorithm="HS256",
)

NOW = 1_800_000_000.0


@dataclass
class FakeClock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class StaticTokenSource:
    token: str = SA_TOKEN
    calls: int = 0

    async def get(self) -> str:
        self.calls += 1
        return self.token


def make_jwt(claims: dict[str, object]) -> str:
    return jwt.encode(claims, "registry-signing-key-for-tests-0123456789", algorithm="HS256")


def unsigned_jwt(claims: dict[str, object]) -> str:
    """A JWT whose claims pyjwt would refuse to encode (e.g. a string exp)."""

    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2ln"


def registry_token(*, iat: float = NOW, lifetime: float = 3600, **extra: object) -> str:
    return make_jwt({"iat": int(iat), "exp": int(iat + lifetime), "aud": "cgr.dev", **extra})


def everything_printed(exc: BaseException) -> str:
    """What any log handler could print about `exc`: message, repr, full chained traceback."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


def issued(*, iat: float = NOW, lifetime: float = 3600, tag: str = "t") -> IssuedToken:
    return IssuedToken(
        token=f"token-{tag}-{iat}", issued_at=iat, expires_at=iat + lifetime, registry="cgr.dev"
    )


@dataclass
class FakeProvider:
    """Issues tokens valid `lifetime` from the fake clock's now; can be held and made to fail."""

    clock: FakeClock
    lifetime: float = 3600
    calls: dict[str, int] = field(default_factory=dict)
    gate: asyncio.Event | None = None
    fail_with: BaseException | None = None

    async def issue(self, *, identity: str) -> IssuedToken:
        self.calls[identity] = self.calls.get(identity, 0) + 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return issued(iat=self.clock.now, lifetime=self.lifetime, tag=identity)
