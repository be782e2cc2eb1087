"""What a Secret asks of ECR: the role to assume and the registries its password is for.

Two annotations, both written by the Secret's owner::

    ecr.pull-secret-updater.chainguard.dev/role-arn: arn:aws:iam::111122223333:role/puller
    ecr.pull-secret-updater.chainguard.dev/registries: 111122223333.dkr.ecr.eu-west-1.amazonaws.com

`registries` is one ECR host or several separated by commas, all in one region (an ECR
password is regional; it is good for every account's registry there that the role may pull
from). The region is read from the hosts, so the exchange's STS and ECR endpoints follow from
what is asked; nothing else a Secret's writer sets reaches the exchange. Which roles a
namespace may name is the identity policy's business (`core.policy`, provider `ecr`), and
whether a role trusts the subject is the role's trust policy's, checked by AWS.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pull_secret_updater.core.annotations import validate_value
from pull_secret_updater.core.errors import BadInput
from pull_secret_updater.core.providers import FILLED_IDENTITY as FILLED_IDENTITY_SUFFIX
from pull_secret_updater.core.providers import Want
from pull_secret_updater.core.reasons import Reason
from pull_secret_updater.providers.ecr import NAME, PREFIX, USERNAME

ROLE_ARN = PREFIX + "role-arn"
REGISTRIES = PREFIX + "registries"
#: What the controller last filled the ECR entries for (its status annotation).
FILLED_IDENTITY = PREFIX + FILLED_IDENTITY_SUFFIX

#: At most this many registries in one Secret's annotation.
MAX_REGISTRIES = 20

_ARN_CHARACTER = re.compile(r"[A-Za-z0-9:/_+=,.@-]")
_ARN_WHAT = "a role ARN has only letters, digits and : / _ + = , . @ -"
ROLE_ARN_PATTERN = re.compile(
    r"arn:(?P<partition>aws|aws-cn|aws-us-gov|aws-iso|aws-iso-[a-z]):iam::(?P<account>[0-9]{12}):"
    r"role/(?:[\x21-\x7e]*/)?(?P<name>[A-Za-z0-9_+=,.@-]{1,64})"
)
_HOSTS_CHARACTER = re.compile(r"[A-Za-z0-9.:, -]")
_HOSTS_WHAT = "registries are ECR hosts separated by commas"
#: `<account>.dkr.ecr.<region>.<domain>`, FIPS (`ecr-fips`) and dual-stack (`dkr-ecr`) names
#: too, as the AWS SDKs and the official credential provider know them; a port is allowed.
ECR_HOST = re.compile(
    r"(?P<account>[0-9]{12})\.dkr[.-]ecr(?P<fips>-fips)?\."
    r"(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2})\."
    r"(?P<domain>amazonaws\.com(?:\.cn)?|on\.aws|on\.amazonwebservices\.com\.cn|"
    r"c2s\.ic\.gov|sc2s\.sgov\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov)"
    r"(?::[0-9]{1,5})?"
)


def validate_role_arn(value: str | None, *, key: str = ROLE_ARN) -> str:
    """The annotation's value if it is an IAM role ARN; raises BadInput naming the problem."""
    value = validate_value(key, value, allowed=_ARN_CHARACTER, what=_ARN_WHAT, max_length=2048)
    if not ROLE_ARN_PATTERN.fullmatch(value):
        raise _bad(
            f"annotation {key} is not an IAM role ARN; expected "
            "arn:aws:iam::<12-digit account>:role/<name>"
        )
    return value


def parse_registries(value: str | None, *, key: str = REGISTRIES) -> tuple[tuple[str, ...], str]:
    """The ECR hosts named (lower-cased, in order, without repeats) and their one region;
    raises BadInput naming the problem."""
    value = validate_value(key, value, allowed=_HOSTS_CHARACTER, what=_HOSTS_WHAT, max_length=2048)
    hosts: list[str] = []
    regions: set[str] = set()
    for position, item in enumerate(value.split(","), start=1):
        host = item.strip().lower()
        if not host:
            raise _bad(f"annotation {key} has an empty item at position {position}")
        match = ECR_HOST.fullmatch(host)
        if match is None:
            raise _bad(
                f"annotation {key}: item {position} is not an ECR registry host; expected "
                "<12-digit account>.dkr.ecr.<region>.amazonaws.com"
            )
        regions.add(match["region"])
        if host not in hosts:
            hosts.append(host)
    if len(hosts) > MAX_REGISTRIES:
        raise _bad(f"annotation {key} names {len(hosts)} registries, more than {MAX_REGISTRIES}")
    if len(regions) > 1:
        raise _bad(
            f"annotation {key} names registries in {len(regions)} regions ("
            + ", ".join(sorted(regions))
            + "); an ECR password is good in one region only: use one Secret per region"
        )
    return tuple(hosts), regions.pop()


@dataclass(frozen=True, kw_only=True)
class EcrSpec:
    """The pure half of the ECR provider."""

    name: str = NAME
    username: str = USERNAME
    annotation_prefix: str = PREFIX
    verifiable: bool = False

    def wants(self, annotations: Mapping[str, str]) -> Want | None:
        role, registries = annotations.get(ROLE_ARN), annotations.get(REGISTRIES)
        if role is None and registries is None:
            return None
        if role is None:
            raise _bad(f"annotation {REGISTRIES} is set but {ROLE_ARN} is missing")
        if registries is None:
            raise _bad(f"annotation {ROLE_ARN} is set but {REGISTRIES} is missing")
        arn = validate_role_arn(role)
        hosts, region = parse_registries(registries)
        partition = partition_of(region)
        if ROLE_ARN_PATTERN.fullmatch(arn)["partition"] != partition:  # type: ignore[index]
            raise _bad(
                f"annotation {ROLE_ARN} names a role outside the partition of region {region} "
                f"({partition}); a role can only be assumed in its own partition"
            )
        return Want(provider=self.name, identity=arn, registries=hosts, scope=region)


def partition_of(region: str) -> str:
    """The AWS partition a region belongs to (aws, aws-cn, aws-us-gov, aws-iso...)."""
    for prefix, partition in _PARTITIONS:
        if region.startswith(prefix):
            return partition
    return "aws"


def domain_of(region: str) -> str:
    """The domain of a region's API endpoints (amazonaws.com, amazonaws.com.cn...)."""
    return _DOMAINS.get(partition_of(region), "amazonaws.com")


_PARTITIONS = (
    ("cn-", "aws-cn"),
    ("us-gov-", "aws-us-gov"),
    ("us-iso-", "aws-iso"),
    ("us-isob-", "aws-iso-b"),
    ("eu-isoe-", "aws-iso-e"),
    ("us-isof-", "aws-iso-f"),
)
_DOMAINS = {
    "aws-cn": "amazonaws.com.cn",
    "aws-iso": "c2s.ic.gov",
    "aws-iso-b": "sc2s.sgov.gov",
    "aws-iso-e": "cloud.adc-e.uk",
    "aws-iso-f": "csp.hci.ic.gov",
}


def _bad(message: str) -> BadInput:
    return BadInput(Reason.BAD_ANNOTATION, message)
