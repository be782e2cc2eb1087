"""The local AWS of the stack: moto's server (``moto``) and what tests see of the stand-in
(``standin.AwsStandIn``). The stand-in's server side lives in ``devstack.tokenservice.aws``."""
