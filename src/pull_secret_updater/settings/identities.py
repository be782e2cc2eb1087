"""Settings of whose Kubernetes token is exchanged and which namespace may use which identity."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator

from pull_secret_updater.core.names import is_dns_label
from pull_secret_updater.settings.checks import Section


class IdentitySettings(Section):
    """Whose token is exchanged, and the policy that closes the confused deputy."""

    token_subject: Literal["controller", "namespace"] = Field(
        default="controller",
        description=(
            "Whose service-account token is exchanged for a Secret's token: controller (the "
            "controller's own; every identity trusts system:serviceaccount:<namespace>:"
            "<service_account>, so a policy must say which namespace may use which identity) "
            "or namespace (a token of the ServiceAccount namespace_service_account in the "
            "Secret's own namespace, requested with TokenRequest; each identity trusts one "
            "namespace, and the token service itself refuses the others). Default: controller."
        ),
    )
    namespace_service_account: str = Field(
        default="pull-secret-updater",
        description=(
            "With token_subject namespace: the ServiceAccount, in each Secret's namespace, whose "
            "token is exchanged; the RBAC grants create on serviceaccounts/token for this name "
            "only. Default: pull-secret-updater."
        ),
    )
    policy_file: Path | None = Field(
        default=None,
        description=(
            "YAML file saying which identities may be used in which namespaces. With "
            "token_subject controller, one is required unless allow_any_identity is set. "
            "Default: none."
        ),
    )
    allow_any_identity: bool = Field(
        default=False,
        description=(
            "With token_subject controller and no policy_file: let any namespace use any "
            "identity that trusts the controller (anyone who can create a Secret with a managed "
            "name can then obtain those tokens). Without it, the controller refuses to start "
            "until a policy is chosen. Default: false."
        ),
    )
    namespace: str = Field(
        default="pull-secret-updater",
        validation_alias=AliasChoices("PSU_NAMESPACE", "POD_NAMESPACE"),
        description=(
            "The controller's own namespace, where its Lease lives and its ServiceAccount is "
            "(for token_source tokenrequest). Also read from POD_NAMESPACE. "
            "Default: pull-secret-updater."
        ),
    )
    service_account: str = Field(
        default="controller",
        description=(
            "The controller's own ServiceAccount, whose token is exchanged when token_source "
            "is tokenrequest. Default: controller."
        ),
    )

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        if not is_dns_label(value):
            raise ValueError(
                "is not a valid namespace name (lower-case letters, digits and '-', "
                "at most 63 characters, starting and ending with a letter or digit)"
            )
        return value
