"""The `modelgif` command (DESIGN §3): extract, distance, triage, zoo, bench, cache.

User mistakes print one sentence on stderr and exit 2; results go to stdout.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from . import (
    BASELINES,
    METHODS,
    TARGETS,
    DistanceTable,
    FieldConfig,
    FieldStore,
    UserError,
    cached_field,
    distance_matrix,
    load_anchors,
    load_model,
    triage,
    verify_unlearning,
    zoo,
)
from .engine.text import dict_table, text_table

EXIT_USAGE = 2


# ----------------------------------------------------------------------------------- helpers


class _Progress:
    """A tqdm bar on stderr per task, created lazily (so cached work prints nothing)."""

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.label, self.enabled, self.bar = label, enabled, None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.label, unit="pt", file=sys.stderr, leave=False,
                            dynamic_ncols=True, mininterval=0.5)
        # update(), not refresh(): redraw at most every mininterval, so a log file or a pipe gets a few
        # lines a second instead of one per chunk of points.
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _floats(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise UserError(f"Expected numbers separated by commas, got {text!r}.") from None


def _ints(text: str | None) -> tuple[int, ...] | None:
    values = _floats(text)
    if values is None:
        return None
    if any(v != int(v) for v in values):
        raise UserError(f"Expected whole numbers, got {text!r}.")
    return tuple(int(v) for v in values)


def _positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (argparse turns the error into its one sentence)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"arch": args.arch, "num_classes": args.num_classes, "input_size": _ints(args.input_size),
            "mean": _floats(args.mean), "std": _floats(args.std)}


def _config(args: argparse.Namespace):
    return FieldConfig(steps=args.steps, method=args.method, baseline=args.baseline, target=args.target,
                       seed=args.seed, device=args.device, autocast=args.autocast)


def _store(args: argparse.Namespace):
    return FieldStore(args.store)


def _fields_for(args: argparse.Namespace, specs: Sequence[str]) -> tuple[list, list, Any, Any]:
    """Load models and anchors, then each model's cached field (computed with a progress bar)."""
    cfg, store = _config(args), _store(args)
    anchors = load_anchors(args.anchors, size=getattr(args, "size", None))
    handles, fields = [], []
    for spec in specs:
        handle = load_model(spec, **_model_kwargs(args))
        bar = _Progress(f"{handle.name}", enabled=not args.quiet)
        try:
            fields.append(cached_field(handle, anchors, cfg, store=store, progress=bar))
        finally:
            bar.close()
        handles.append(handle)
    return handles, fields, anchors, cfg


def _emit(rows: list[dict[str, Any]], fmt: str, columns: Sequence[str] | None = None) -> str:
    columns = list(columns or (rows[0].keys() if rows else []))
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue().rstrip("\n")
    return dict_table(rows, columns)


# ----------------------------------------------------------------------------------- commands


def cmd_extract(args: argparse.Namespace) -> int:
    handles, fields, anchors, cfg = _fields_for(args, args.models)
    rows = [{"model": spec, "fingerprint": h.fingerprint[:16], "key": f.key[:16],
             "shape": "x".join(map(str, f.shape)), "seconds": f.manifest.get("seconds"),
             "path": str(f.path)}
            for spec, h, f in zip(args.models, handles, fields)]
    print(_emit(rows, args.format))
    return 0


def cmd_distance(args: argparse.Namespace) -> int:
    _handles, fields, anchors, cfg = _fields_for(args, args.models)
    matrix = distance_matrix(fields, metric=args.metric)
    table = DistanceTable(list(args.models), matrix, args.metric, anchors.spec, anchors.sha256, cfg.to_dict())
    if args.format in ("json", "csv"):  # the same bytes as the app's downloads
        sys.stdout.write(table.to_json() if args.format == "json" else table.to_csv())
        return 0
    header = ["model", *(str(j) for j in range(len(args.models)))]
    body = [[f"{i}: {spec}", *(f"{v:.4f}" for v in matrix[i])] for i, spec in enumerate(args.models)]
    print(text_table(body, header))
    return 0


def cmd_triage(args: argparse.Namespace) -> int:
    bar = _Progress("triage", enabled=not args.quiet)
    kwargs = {"anchors": args.anchors} if args.anchors else {}
    try:
        report = triage(args.victim, args.suspect, references=args.reference or None,
                        cfg=_config(args) if args.custom_config else None, store=_store(args),
                        progress=bar, rule=args.rule, **kwargs)
    finally:
        bar.close()
    report.command = "modelgif " + " ".join(shlex.quote(a) for a in getattr(args, "argv", []))
    if args.report:
        from .analysis.report import write_triage_report

        write_triage_report(report, args.report, store=_store(args))
    print(json.dumps(report.to_dict(), indent=2) if args.format == "json" else report.to_text())
    return 0


def cmd_unlearning(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .analysis.unlearning import DEFAULT_FIELD

    bar = _Progress("unlearning", enabled=not args.quiet)
    try:
        report = verify_unlearning(args.original, args.claimed, args.forgotten_class,
                                   anchors=args.anchors, references=args.reference or None,
                                   cfg=replace(DEFAULT_FIELD, steps=args.steps, device=args.device),
                                   store=_store(args), progress=bar)
    finally:
        bar.close()
    print(json.dumps(report.to_dict(), indent=2) if args.format == "json" else report.to_text())
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    if args.zoo_command == "build":
        bar = None
        if not args.quiet:
            from tqdm import tqdm

            bar = tqdm(total=0, desc="zoo", file=sys.stderr, unit="model")

        def progress(done: int, total: int, name: str) -> None:
            if bar is not None:
                bar.total = total
                bar.n = done
                bar.set_postfix_str(name)
                bar.refresh()

        root = zoo.build_zoo(size=args.size, progress=progress, force=args.force)
        if bar is not None:
            bar.close()
        print(f"zoo ({args.size}) ready in {root}")
        return 0
    rows = zoo.list_zoo(size=args.size)
    if not rows:
        raise UserError(f"The {args.size} zoo is not built yet; run `modelgif zoo build --size {args.size}`.")
    print(_emit(rows, args.format, ["name", "role", "family", "arch", "attack", "parent", "test_accuracy"]))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.bench_command == "speed":
        from .bench.speed import format_speed, run_speed_bench

        result = run_speed_bench(device=args.device, quick=args.quick)
        print(json.dumps(result, indent=2) if args.format == "json" else format_speed(result))
        return 0
    if args.bench_command == "ip":
        from .bench.ip import format_ip_table, run_ip_bench

        counts = _ints(args.anchor_counts) if args.anchor_counts else ((16, 64) if args.quick else None)
        kwargs: dict[str, Any] = {"size": args.size}
        if counts:
            kwargs["anchor_counts"] = counts
        from .bench.verdicts import format_verdicts, run_verdict_bench

        bar = _Progress("bench ip")
        result: dict[str, Any] = {}
        try:
            if args.part in ("all", "auc"):
                result = run_ip_bench(progress=bar, **kwargs)
            if args.part in ("all", "verdicts"):
                verdicts = run_verdict_bench(size=args.size, progress=bar)
                result["verdicts"] = verdicts
                result["lineage"] = {k: verdicts["lineage"][k] for k in ("precision", "recall", "direction_accuracy")}
        finally:
            bar.close()
        if args.format == "json":
            print(json.dumps(result, indent=2))
        else:
            text = [format_ip_table(result)] if "auc" in result else []
            text += [format_verdicts(result["verdicts"])] if "verdicts" in result else []
            print("\n\n".join(text))
        return 0
    import importlib

    bench = importlib.import_module(f".bench.{args.bench_command}", __package__)
    result = bench.run_bench(quick=args.quick, seeds=args.seeds)
    print(json.dumps(result, indent=2) if args.format == "json" else bench.format_table(result))
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.cache_command == "ls":
        rows = store.list()
        for r in rows:
            if args.format != "json":
                r["config"] = json.dumps(r.get("config"), sort_keys=True)
            r["key"] = r["key"] if args.format != "table" else r["key"][:16]
        if args.format == "table":
            status = store.status()
            print(_emit(rows, "table", ["key", "model_name", "anchors", "size_bytes", "seconds", "created"])
                  if rows else "(no fields stored)")
            print(f"{status['fields']} fields, {status['bytes'] / 1e6:.1f} MB in {status['root']}")
        else:
            print(_emit(rows, args.format))
        return 0
    if args.cache_command == "rm":
        removed = sum(store.remove(sel) for sel in args.selector)
        print(f"removed {removed} field(s)")
        return 0
    stats = store.gc()
    print(json.dumps(stats) if args.format == "json" else
          ", ".join(f"{k}: {v}" for k, v in stats.items()))
    return 0


# ----------------------------------------------------------------------------------- parser


def _add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("checkpoint files (architecture and input config)")
    g.add_argument("--arch", help="timm architecture of a checkpoint file, e.g. resnet18")
    g.add_argument("--num-classes", type=int, help="classes of the checkpoint (inferred from its head if omitted)")
    g.add_argument("--input-size", help="C,H,W the model expects, e.g. 3,32,32 (default: the architecture's)")
    g.add_argument("--mean", help="per-channel mean, e.g. 0.485,0.456,0.406")
    g.add_argument("--std", help="per-channel std, e.g. 0.229,0.224,0.225")


def _add_field_options(p: argparse.ArgumentParser, anchors_required: bool = True) -> None:
    p.add_argument("--anchors", required=anchors_required, default=None,
                   help="anchor spec: digits:N[:SEED], natural:N[:SEED], noise:N[:SEED], cutmix:BASE:N:SEED, "
                   "dir:PATH" + ("" if anchors_required else " (default: triage's tuned anchors)"))
    p.add_argument("--size", type=int, default=None, help="resize the anchors to SIZE x SIZE")
    p.add_argument("--steps", type=int, default=50, help="quadrature points K (default 50)")
    p.add_argument("--method", default="gausslegendre", choices=METHODS)
    p.add_argument("--baseline", default="black", choices=BASELINES)
    p.add_argument("--target", default="predicted", choices=TARGETS)
    p.add_argument("--seed", type=int, default=0, help="seed of the noise/shuffle baselines")
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1, mps")
    p.add_argument("--autocast", default=None, choices=["none", "tf32", "bf16", "fp16"],
                   help="arithmetic on GPU: none = full fp32 (the default; same field as on the CPU), "
                        "tf32, or a bf16/fp16 autocast forward")
    _add_model_options(p)


def _add_common(p: argparse.ArgumentParser, formats: Sequence[str] = ("table", "json", "csv")) -> None:
    p.add_argument("--format", default="table", choices=formats)
    p.add_argument("--store", default=None, help="field store directory (default $MODELGIF_HOME or the user cache)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one sentence, exit 2, no usage dump
        raise UserError(f"{message[0].upper()}{message[1:]} (see `{self.prog} --help`).")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="modelgif",
                     description="Model Gradient Fields: how functionally close are these models?")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("extract", help="extract (and cache) the fields of models")
    p.add_argument("models", nargs="+", metavar="MODEL")
    _add_field_options(p)
    _add_common(p)
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("distance", help="field distance matrix between models")
    p.add_argument("models", nargs="+", metavar="MODEL")
    p.add_argument("--metric", default="cosine", choices=["cosine", "euclidean"])
    _add_field_options(p)
    _add_common(p)
    p.set_defaults(func=cmd_distance)

    p = sub.add_parser("triage", help="is a suspect model derived from the victim?")
    p.add_argument("--victim", required=True)
    p.add_argument("--suspect", required=True, nargs="+")
    p.add_argument("--reference", nargs="*", default=[], help="independent reference models")
    _add_field_options(p, anchors_required=False)
    p.add_argument("--custom-config", action="store_true",
                   help="use the field options given here (--steps, --target, ...) instead of triage's defaults")
    p.add_argument("--rule", default="joint", choices=["joint", "minz"],
                   help="verdict rule: joint null of the components (default) or the Sidak-corrected minimum z")
    p.add_argument("--report", default=None, metavar="PATH",
                   help="also write a self-contained HTML evidence report to PATH")
    _add_common(p, formats=("table", "json"))
    p.set_defaults(func=cmd_triage)

    p = sub.add_parser("unlearning", help="has a claimed-unlearned model forgotten a class of the original?")
    p.add_argument("--original", required=True)
    p.add_argument("--claimed", required=True, help="the model that should have forgotten the class")
    p.add_argument("--class", dest="forgotten_class", required=True, type=int, help="the forgotten class")
    p.add_argument("--reference", nargs="*", default=[],
                   help="models trained independently of the original, on data with the class "
                   "(default for a digits original: the built-in zoo's calibration models)")
    p.add_argument("--anchors", default=None, help="anchor spec; its images of the class are used "
                   "(default digits:500, every held-out digit)")
    p.add_argument("--steps", type=_positive_int, default=25, help="quadrature points K (default 25)")
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1, mps")
    _add_common(p, formats=("table", "json"))
    p.set_defaults(func=cmd_unlearning)

    p = sub.add_parser("zoo", help="the built-in model zoo")
    zsub = p.add_subparsers(dest="zoo_command", required=True, parser_class=_Parser)
    for name in ("build", "list"):
        zp = zsub.add_parser(name)
        zp.add_argument("--size", default="small", choices=["small", "full"])
        if name == "build":
            zp.add_argument("--force", action="store_true", help="rebuild models that exist")
        _add_common(zp)
    p.set_defaults(func=cmd_zoo)

    p = sub.add_parser("bench", help="benchmarks (print ratios measured side by side)")
    bsub = p.add_subparsers(dest="bench_command", required=True, parser_class=_Parser)
    for name in ("ip", "speed", "relatedness", "unlearning"):
        bp = bsub.add_parser(name)
        bp.add_argument("--format", default="table", choices=["table", "json"])
        bp.add_argument("--quick", action="store_true", help="a smaller, CI-sized run")
        if name == "speed":
            bp.add_argument("--device", default="auto")
        if name in ("relatedness", "unlearning"):
            what = "task zoos" if name == "relatedness" else "original models, each with its unlearners"
            bp.add_argument("--seeds", type=_positive_int, default=None,
                            help=f"how many {what} (default: the run's size, --quick or full)")
        if name == "ip":
            bp.add_argument("--size", default="small", choices=["small", "full"])
            bp.add_argument("--anchor-counts", default=None, help="e.g. 8,16,32,64")
            bp.add_argument("--part", default="all", choices=["all", "auc", "verdicts"],
                            help="AUC tables, verdict rates at alpha with null-pair false alarms and the "
                                 "family graph's lineage scores, or both (default)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("cache", help="the field store")
    csub = p.add_subparsers(dest="cache_command", required=True, parser_class=_Parser)
    for name in ("ls", "rm", "gc"):
        cp = csub.add_parser(name)
        if name == "rm":
            cp.add_argument("selector", nargs="+", help="a key prefix, a model name, or 'all'")
        _add_common(cp)
    p.set_defaults(func=cmd_cache)
    return parser


def _version() -> str:
    from . import __version__

    return f"modelgif {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        args = build_parser().parse_args(argv)
        args.argv = argv  # the command as typed (the triage report quotes it)
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"modelgif: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("modelgif: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
