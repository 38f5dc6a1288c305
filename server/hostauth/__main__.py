"""`python -m hostauth ...`: the `hostauth` command (hostauth/cli/main.py)."""

import sys

from hostauth.cli.main import main

sys.exit(main())
