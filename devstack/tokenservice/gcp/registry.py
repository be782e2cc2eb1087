"""The token realm of the stand-in's Artifact Registry: ``/gar/token``.

A registry named ``<location>-docker.pkg.dev[:port]`` (its ``service``) sends pulling clients
here with HTTP Basic ``oauth2accesstoken:<access token>``, as a pull Secret filled by the
Google provider holds it. The token must be one the stand-in issued (federated or a service
account's), not expired. The answer is a pull-only registry token signed by the stack's
registry signer, never outliving the access token. The ``admin`` user may push.
"""

from __future__ import annotations

import re
from typing import Final

from devstack.tokenservice.gcp.ledger import Ledger
from devstack.tokenservice.registry_tokens import CloudRegistryTokens, Principal, Realm, unexpired

GAR_TOKEN_PATH: Final = "/gar/token"
USERNAME: Final = "oauth2accesstoken"
_SERVICE = re.compile(r"[a-z]+(?:-[a-z]+[0-9]+)?-docker\.pkg\.dev(:\d+)?")


class GarRegistryTokens(CloudRegistryTokens[Ledger]):
    realm = Realm(GAR_TOKEN_PATH, USERNAME, _SERVICE, what="an Artifact Registry host")

    def _principal(self, registry: re.Match[str], *, credential: str) -> Principal:
        token = unexpired(
            self._ledger.get(credential),
            unknown="not an access token Google issued",
            expired="the access token has expired",
        )
        who = token.service_account or token.principal
        return Principal(who, admin=False, may_pull=True, expires_at=int(token.expires_at))
