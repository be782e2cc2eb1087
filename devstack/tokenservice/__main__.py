"""``python -m devstack.tokenservice serve ...``, as ``devstack.stack`` starts it."""

import sys

from devstack.tokenservice.cli import main

sys.exit(main())
