"""ECR refresh wave: the mixed refresh wave (`mixed_wave`) of Secrets that ask for an ECR
password (one of R roles, for the AWS stand-in's registry) and nothing else, the passwords
living `wave_lifetime` seconds (AWS's live 12 hours).

Its figures keep the refresh wave's names: its `identities` are the roles (a role is what an
ECR entry is filled for), its `tokens` the passwords, its `exchanges` the
GetAuthorizationToken calls.
"""

from __future__ import annotations

from bench import lab
from bench.clouds import Ecr
from bench.mixed_wave import wave
from bench.results import ScenarioResult
from bench.sizes import Sizes

TITLE = "Refresh wave, ECR"


async def run(sizes: Sizes, stacks: lab.Stacks) -> ScenarioResult:
    return await wave(sizes, stacks, every=[Ecr()], name="ecr_wave", title=TITLE,
                      prefix="ecr-wave")  # fmt: skip
