"""A real second process for tests/test_store.py: writes one field into a store, or races for one.

put mode:      python tests/_store_writer.py ROOT KEY put [--shape N K D] [--slow-disk SECONDS]
compute mode:  python tests/_store_writer.py ROOT KEY compute --counter FILE --out FILE
                   [--ready FILE --go FILE] [--sleep SECONDS] [--shape N K D]

--slow-disk makes fsync take that long, as on a slow or network disk, so a test can kill the writer
while its temp file exists; everything else is the store's own code path.
compute mode appends this process's id to the counter file each time its compute() runs (so the
test can count computations) and writes a JSON report (pid, computed?, sha256 of the field, times).
The field depends on the pid, so two computations could never give two processes the same field.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import torch

from modelgif_core import FieldStore


def _field(shape: list[int], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)  # [N, K, D]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("key")
    ap.add_argument("mode", choices=["put", "compute"])
    ap.add_argument("--shape", type=int, nargs=3, default=[4, 5, 12])
    ap.add_argument("--slow-disk", type=float, default=0.0)
    ap.add_argument("--counter")
    ap.add_argument("--out")
    ap.add_argument("--ready")
    ap.add_argument("--go")
    ap.add_argument("--sleep", type=float, default=0.0)
    args = ap.parse_args()
    store = FieldStore(args.root)

    if args.slow_disk:
        real_fsync = os.fsync

        def slow_fsync(fd: int) -> None:
            time.sleep(args.slow_disk)
            real_fsync(fd)

        os.fsync = slow_fsync

    if args.mode == "put":
        store.put(args.key, _field(args.shape, 0), {"model_name": "writer", "config": {}})
        return

    computed = []

    def compute() -> tuple[torch.Tensor, dict]:
        with open(args.counter, "a") as f:
            f.write(f"{os.getpid()}\n")
        computed.append(True)
        time.sleep(args.sleep)  # hold the key's lock long enough for the other process to queue
        return _field(args.shape, os.getpid()), {"model_name": f"pid{os.getpid()}", "config": {}}

    if args.ready:
        Path(args.ready).touch()
        deadline = time.monotonic() + 60
        while not Path(args.go).exists():
            if time.monotonic() > deadline:
                raise SystemExit("no go signal")
            time.sleep(0.005)
    start = time.time()
    stored = store.get_or_compute(args.key, compute)
    end = time.time()
    digest = hashlib.sha256(stored.unit.view(torch.uint8).numpy().tobytes()).hexdigest()
    report = {"pid": os.getpid(), "computed": bool(computed), "sha256": digest}
    report.update(start=start, end=end)
    Path(args.out).write_text(json.dumps(report))


if __name__ == "__main__":
    main()
