"""``python -m gateway`` is the ``lockgate`` command."""

import sys

from gateway.cli import main

sys.exit(main())
