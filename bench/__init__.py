"""Benchmarks of the controller on the local stack: ``python -m bench [--quick] [--out DIR]``.

The scenarios, each on a fresh ``devstack.stack.LocalStack`` with the shipped manifests
applied and the controller running as its ServiceAccount:

- ``cold_fill``: N empty annotated Secrets, M identities; time until every Secret holds a
  valid token, against a bare lightkube client doing one get and one patch per Secret with
  the same concurrency, measured in the same run; exchanges made.
- ``steady_latency``: Secrets created at a steady rate while the controller runs; time from
  the create call's return to the watch event that carries the token.
- ``footprint``: the controller's memory and CPU with managed Secrets while the cluster holds
  more and more unrelated Secrets; its API requests per minute in steady state.
- ``refresh_wave``: short-lived tokens refreshed over several lifetimes; exchanges per
  window, the spread of refresh times, and whether a Secret was ever seen with an expired
  token.
- ``scale``: 1,000, 5,000 and 20,000 managed Secrets over M identities; at each size the cold
  fill against the bare client, the controller's memory after the fill (and its slope, bytes
  per Secret), and its API requests and CPU per minute in steady state.
- ``ecr_fill``: the cold fill with Secrets that ask for a cgr.dev token and an ECR password
  (M identities, R roles on the AWS stand-in): both entries against the bare client writing
  both, exchanges and AWS calls per role, every password one the stand-in issued.
- ``ecr_wave``: the refresh wave with short-lived ECR passwords: expired passwords seen,
  exchanges per window and per role and lifetime, AWS calls, writes.
- ``mixed_fill``: the cold fill with Secrets that ask for every provider's entry (cgr.dev,
  ECR, Artifact Registry, ACR; M identities of each kind, round robin): all four entries
  against the bare client writing all four, each stand-in's calls per identity, every
  credential one its stand-in issued for the Secret's identity.
- ``mixed_wave``: the refresh wave with every provider's credentials short-lived at once:
  expired credentials seen in any entry, and per provider exchanges per window, the stand-in's
  calls and the spread of refreshes.

Every comparing figure is a ratio against a baseline measured in the same run. The results
go to ``results.json`` (every figure), ``summary.md`` (targets with PASS or MISSED) and PNG
plots. Timings are reported, never asserted: the exit status says only whether every
scenario ran (``--strict`` also fails on a missed target).
"""
