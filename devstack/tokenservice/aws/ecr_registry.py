"""The token realm of the stand-in's ECR registries: ``/ecr/token``.

A registry named ``<account>.dkr.ecr.<region>.amazonaws.com[:port]`` (its ``service``) sends
pulling clients here with HTTP Basic ``AWS:<password>``, as a pull Secret filled from
``GetAuthorizationToken`` holds it. The password must be one the front issued, not expired,
and issued for this registry's account and region. The answer is a pull-only registry token
signed by the stack's registry signer, never outliving the password. The ``admin`` user may
push (the stack puts its test image there).
"""

from __future__ import annotations

import re
from typing import Final

from devstack.tokenservice.aws.ecr_front import USERNAME
from devstack.tokenservice.aws.ledger import Ledger
from devstack.tokenservice.registry_tokens import (
    CloudRegistryTokens,
    Principal,
    Realm,
    denied,
    unexpired,
)

ECR_TOKEN_PATH: Final = "/ecr/token"
_SERVICE = re.compile(
    r"(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(:\d+)?"
)


class EcrRegistryTokens(CloudRegistryTokens[Ledger]):
    realm = Realm(ECR_TOKEN_PATH, USERNAME, _SERVICE, what="an ECR registry")

    def _principal(self, registry: re.Match[str], *, credential: str) -> Principal:
        password = unexpired(
            self._ledger.passwords.get(credential),
            unknown="not a password this registry issued",
            expired="the password has expired",
        )
        if (password.account, password.region) != (registry["account"], registry["region"]):
            raise denied("the password is for another registry")
        return Principal(
            password.role_arn, admin=False, may_pull=True, expires_at=int(password.expires_at)
        )
