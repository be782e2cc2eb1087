"""ECR cold fill: the mixed cold fill (`mixed_fill`) of Secrets that ask for a cgr.dev token
(one of M identities) and an ECR password (one of R roles, for the AWS stand-in's registry).
"""

from __future__ import annotations

from bench import lab
from bench.clouds import Chainguard, Ecr
from bench.mixed_fill import fill
from bench.results import ScenarioResult
from bench.sizes import Sizes

TITLE = "Cold fill, cgr.dev and ECR"


async def run(sizes: Sizes, stacks: lab.Stacks) -> ScenarioResult:
    return await fill(sizes, stacks, every=[Chainguard(), Ecr()], name="ecr_fill", title=TITLE,
                      prefix="ecr-fill")  # fmt: skip
