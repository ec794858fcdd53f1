"""``python -m liftwatch``: the ``liftwatch`` command."""

import sys

from liftwatch.cmd.main import main

sys.exit(main())
