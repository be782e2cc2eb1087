"""The Azure stand-in: Microsoft Entra ID's token endpoint for federated workload identities,
and Azure Container Registry's OAuth endpoints, as Microsoft documents them.

No third-party emulator knows Entra's federated identity credentials, so the whole of it is
here, on a listener of its own. Modules, by noun: ``directory`` (app registrations, their
federated credentials, AcrPull role assignments, the tokens issued, config, stats, kept by
the token service's ``cloud``: no aiohttp), ``entra`` (tenant discovery and
``/<tenant>/oauth2/v2.0/token``), ``acr`` (``/oauth2/exchange`` and ``/oauth2/token``, the
registries' token realm) and ``front`` (the app and its admin routes). Only ``directory`` is
imported by the stack.
"""
