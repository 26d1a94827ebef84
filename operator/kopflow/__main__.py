"""`python -m kopflow ...` is the same as `kopflow ...`.

KOPFLOW_PROFILE=FILE runs it under cProfile and writes the profile to FILE on a clean exit
(benchmarks: `python -m pstats FILE`).
"""

import os
import sys

from kopflow.cli import main

if profile := os.environ.get("KOPFLOW_PROFILE"):
    import cProfile

    profiler = cProfile.Profile()
    try:
        code = profiler.runcall(main)
    finally:
        profiler.dump_stats(profile)
    sys.exit(code)
sys.exit(main())
