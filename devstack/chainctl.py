"""Just enough of ``chainctl`` for the documented identity commands to run against the local stack.

    python -m devstack.chainctl iam identities create NAME \\
        --identity-issuer=URL (--subject=S | --subject-pattern=P) \\
        [--issuer-keys=JWKS] [--audience=A] --role=registry.pull
    python -m devstack.chainctl iam identities list [-o json]
    python -m devstack.chainctl iam identities delete UID [--yes]

``create`` prints only the new identity's UID, so ``UID=$(chainctl ...)`` works as in the
original instructions. Errors are one line on stderr and exit status 1. The token service is
found through ``PSU_TOKENSERVICE_ADMIN_URL``, ``PSU_TOKENSERVICE_ADMIN_TOKEN`` and
``PSU_CA_FILE`` (the CA that signed its serving cert).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import httpx2

from devstack.tokenservice import TokenServiceAdmin, TokenServiceError

ENV_ADMIN_URL = "PSU_TOKENSERVICE_ADMIN_URL"
ENV_ADMIN_TOKEN = "PSU_TOKENSERVICE_ADMIN_TOKEN"
ENV_CA_FILE = "PSU_CA_FILE"


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line and status 1, like every other failure of this command.
        self.exit(1, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="chainctl")
    groups = parser.add_subparsers(dest="group", required=True)
    iam = groups.add_parser("iam").add_subparsers(dest="resource", required=True)
    identities = iam.add_parser("identities").add_subparsers(dest="verb", required=True)

    create = identities.add_parser("create", help="create an assumable identity")
    create.add_argument("name")
    create.add_argument("--identity-issuer", required=True)
    who = create.add_mutually_exclusive_group(required=True)
    who.add_argument("--subject")
    who.add_argument("--subject-pattern")
    create.add_argument("--issuer-keys", help="the issuer's JWKS, as JSON")
    create.add_argument("--audience")
    create.add_argument(
        "--role", action="append", default=[], help="role name; repeat or comma-separate"
    )

    listing = identities.add_parser("list", help="list identities")
    listing.add_argument("-o", "--output", choices=("table", "json"), default="table")

    delete = identities.add_parser("delete", help="delete an identity")
    delete.add_argument("uid")
    delete.add_argument("-y", "--yes", action="store_true", help="accepted for compatibility")
    return parser


def admin_from_env() -> TokenServiceAdmin:
    url = os.environ.get(ENV_ADMIN_URL)
    token = os.environ.get(ENV_ADMIN_TOKEN)
    if not url or not token:
        raise UsageError(f"set {ENV_ADMIN_URL} and {ENV_ADMIN_TOKEN} to reach the token service")
    return TokenServiceAdmin(url, token, os.environ.get(ENV_CA_FILE) or None)


def _roles(values: Sequence[str]) -> list[str]:
    return [role for value in values for role in value.split(",") if role]


def run(args: argparse.Namespace, admin: TokenServiceAdmin) -> str:
    """Execute one command and return what it prints."""
    if args.verb == "create":
        return admin.create_identity(
            name=args.name,
            issuer=args.identity_issuer,
            subject=args.subject,
            subject_pattern=args.subject_pattern,
            audience=args.audience,
            issuer_keys=args.issuer_keys,
            roles=_roles(args.role),
        )
    if args.verb == "list":
        items = admin.list_identities()
        if args.output == "json":
            return json.dumps(items, indent=2)
        rows = [f"{i['uid']}\t{i['name']}\t{i['issuer']}" for i in items]
        return "\n".join(["UID\tNAME\tISSUER", *rows])
    admin.delete_identity(args.uid)
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with admin_from_env() as admin:
            output = run(args, admin)
    except UsageError as e:
        print(f"chainctl: {e}", file=sys.stderr)
        return 1
    except TokenServiceError as e:
        print(f"chainctl: {e.message} ({e.code})", file=sys.stderr)
        return 1
    except (httpx2.HTTPError, OSError) as e:
        print(f"chainctl: cannot reach the token service: {e}", file=sys.stderr)
        return 1
    if output:
        print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
