"""``python -m nol_fast`` runs the ``nol-fast`` command line."""

import sys

from nol_fast.cli.main import main

sys.exit(main())
