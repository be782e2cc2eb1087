"""Registry providers: one package each, behind one interface.

A provider is a package here with three parts, and one line in `table.PROVIDERS`:

- its pure half (`core.providers.ProviderSpec`): the annotations it reads and how their
  values are validated into a `Want`, the dockerconfig user name, whether a credential found
  in a Secret can be verified;
- its exchange (`tokens.provider.TokenProvider`): a Kubernetes token in, a `Credential` out,
  every failure translated once into `tokens.errors.ExchangeError` with a cause and a
  retryable flag;
- its settings section (`base.ProviderSection`): its endpoints (all overridable), the
  audience of the Kubernetes token it needs, and how to build the two halves.

Providers depend on the core and on the token layer's shared helpers (HTTP, OIDC keys,
service-account tokens), never on the controller, the Kubernetes adapters or each other
(import-linter holds them to that). This package's `__init__` imports nothing, so the kubelet
plugin can load one provider's exchange without the settings model or the other providers.
"""
