"""How big each scenario is: the full sizes, and the scaled-down ones of ``--quick``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Sizes:
    mode: str
    #: Identities the Secrets are spread over (round robin).
    identities: int = 10
    #: IAM roles the Secrets of the ECR scenarios are spread over (round robin).
    roles: int = 10
    #: The controller's workers, and the baseline client's concurrency.
    workers: int = 4
    #: One stack for all scenarios (cleaned up between them) rather than a fresh one each.
    shared_stack: bool = False

    # cold fill
    fill_secrets: int = 2000

    # steady latency
    steady_secrets: int = 300
    steady_rate: float = 10.0

    # footprint
    footprint_managed: int = 1000
    footprint_unrelated: tuple[int, ...] = (0, 10_000, 30_000)
    footprint_unrelated_bytes: int = 4096
    #: Seconds a freshly started controller runs before its memory is read.
    footprint_settle: float = 10.0
    #: Seconds of steady state whose API requests are counted.
    footprint_request_window: float = 60.0

    # refresh wave
    wave_secrets: int = 2000
    wave_lifetime: int = 60
    wave_lifetimes: int = 4
    #: Seconds between sweeps that list every managed Secret and check its token's expiry.
    wave_sweep_interval: float = 5.0

    # outage wave (with the refresh wave's token lifetime and sweep interval)
    outage_secrets: int = 2000

    # scale
    #: Numbers of managed Secrets, each filled by a fresh controller (the stack keeps growing).
    scale_secrets: tuple[int, ...] = (1000, 5000, 20_000)
    #: Seconds a controller runs after its fill before its memory is read.
    scale_settle: float = 10.0
    #: Seconds of steady state after the fill whose API requests are counted.
    scale_request_window: float = 60.0

    # credential-provider plugin: cold calls of the bundle (and of the project's Python)
    plugin_calls: int = 50

    @property
    def quick(self) -> bool:
        return self.mode == "quick"


FULL = Sizes(mode="full")

QUICK = Sizes(
    mode="quick",
    shared_stack=True,
    fill_secrets=200,
    steady_secrets=60,
    steady_rate=20.0,
    footprint_managed=200,
    footprint_unrelated=(0, 1000, 3000),
    footprint_settle=1.5,
    footprint_request_window=6.0,
    wave_secrets=200,
    wave_lifetime=30,
    wave_lifetimes=2,
    wave_sweep_interval=3.0,
    outage_secrets=200,
    scale_secrets=(200, 500, 1000),
    scale_settle=1.5,
    scale_request_window=6.0,
    plugin_calls=15,
)
