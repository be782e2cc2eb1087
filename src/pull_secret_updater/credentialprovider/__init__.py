"""Kubelet credential-provider mode: per-workload identities, and no Secret at all.

Since Kubernetes 1.34 the kubelet can hand an exec credential-provider plugin a token of the
ServiceAccount of the Pod that is pulling. This package is that plugin, on the controller's
exchange core: `plugin` (the one call: request in, exchange, answer out), `protocol` (the
kubelet's request and response as values, pure), `options` (the plugin's flags, which the
kubelet's config passes), and `install` (the CredentialProviderConfig and the RBAC a node
needs, rendered for the ``credential-provider`` command).

An edge like ``cli``: nothing below imports it, and it imports neither the Kubernetes client
nor the controller, so that the plugin, started at every pull the kubelet has no cached
credential for, starts fast.
"""
