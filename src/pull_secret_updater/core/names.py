"""Kubernetes object names: which strings the API server accepts as the name of an object.

A name is checked where it is given (a setting, a command-line flag, the name a watch is
filtered by), so a typo is reported there, in the user's words, rather than as a watch that
never sees anything or a request the API server refuses later. These are the API server's own
rules (k8s.io/apimachinery `IsDNS1123Label` and `IsDNS1123Subdomain`), kept in one place:

- a DNS-1123 label (namespaces): lower-case letters, digits and '-', starting and ending with a
  letter or digit, at most 63 characters;
- a DNS-1123 subdomain (Secrets, ServiceAccounts, Leases): labels joined by '.', at most 253
  characters in all.

The messages are the caller's: only the caller knows what the name was meant to be.
"""

from __future__ import annotations

import re

__all__ = ["MAX_LABEL", "MAX_SUBDOMAIN", "is_dns_label", "is_dns_subdomain"]

MAX_LABEL = 63
MAX_SUBDOMAIN = 253

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_LABEL = re.compile(_LABEL)
_DNS_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")


def is_dns_label(name: str) -> bool:
    """Whether `name` may name a namespace."""
    return len(name) <= MAX_LABEL and _DNS_LABEL.fullmatch(name) is not None


def is_dns_subdomain(name: str) -> bool:
    """Whether `name` may name a Secret, a ServiceAccount or a Lease."""
    return len(name) <= MAX_SUBDOMAIN and _DNS_SUBDOMAIN.fullmatch(name) is not None
