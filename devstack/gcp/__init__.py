"""The Google stand-in, as the stack sees it (``standin.GcpStandIn``)."""
