"""Helpers for the people who install the controller, behind the CLI's commands besides `run`.

`identity` decides, from a cluster's service-account issuer alone, what kind of cluster it is
and which `chainctl iam identities create` command fits it; `discovery` reads that issuer and
its keys from the API server. `status` reads the managed Secrets' annotations into rows, and
`durations` words times the way a person reads them. `check` performs one exchange as the
controller would. `kubeconfig` finds and opens the cluster the way kubectl does.

This is an edge package: it uses the core, the token layer and the Kubernetes adapters, and
nothing below imports it. Failures meant for the user are `errors.ToolError`, one line each.
"""
