"""The Azure stand-in of the local stack: what tests and the demo see (``standin``); its
servers are the token service's Azure front (``devstack.tokenservice.azure``) and a
distribution registry named as an ACR registry."""
