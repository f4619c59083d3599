"""Entry point of a zoo worker process (`python -m modelgif_core._zoo_worker`); see zoo._run_tasks."""

from modelgif_core.zoo import worker_main

if __name__ == "__main__":
    worker_main()
