"""`python -m kopflow ...` is the same as `kopflow ...`."""

import sys

from kopflow.cli import main

sys.exit(main())
