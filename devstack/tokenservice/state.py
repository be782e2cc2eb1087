"""The state the handlers of all three listeners share: one ``ServiceState`` per process."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from devstack.tokenservice.faults import FaultSwitch
from devstack.tokenservice.identities import Identity, IdentityStore
from devstack.tokenservice.keys import SigningKey, StsKeys
from devstack.tokenservice.oidc import IssuerKeys
from devstack.tokenservice.protocol import ErrorCodes
from devstack.tokenservice.settings import RuntimeConfig, Settings
from devstack.tokenservice.stats import IssuedTokens, Stats


@dataclass(eq=False)
class ServiceState:
    settings: Settings
    store: IdentityStore
    sts_keys: StsKeys
    registry_key: SigningKey
    registry_cert: Path
    issuer_keys: IssuerKeys
    config: RuntimeConfig
    faults: FaultSwitch = field(default_factory=FaultSwitch)
    stats: Stats = field(default_factory=Stats)
    issued: IssuedTokens = field(default_factory=IssuedTokens)
    #: Known once the STS listener is bound, unless ``--issuer-url`` gave it.
    issuer_url: str = ""

    def lifetime_of(self, identity: Identity | None) -> int:
        """Seconds an STS token for ``identity`` lives: its own lifetime, or the service's."""
        if identity is not None and identity.lifetime is not None:
            return identity.lifetime
        return self.config.lifetime

    def sts_error_codes(self) -> ErrorCodes:
        return self.config.error_codes
