"""`python -m modelgif_core.zoo`: one zoo build worker process (see `build.worker_main`)."""

from .build import worker_main

worker_main()
