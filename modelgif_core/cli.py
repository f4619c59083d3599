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
    TRIAGE_RULES,
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
                       seed=args.seed, device=args.device, autocast=args.autocast, sketch=args.sketch)


def _with_sketch(args: argparse.Namespace, cfg: Any, anchors: Any) -> Any:
    """cfg with the sketch asked for, or the default one for a big full field (said on stderr)."""
    from dataclasses import replace

    from .engine.sketch import default_sketch

    if getattr(args, "sketch", None) is not None:
        return replace(cfg, sketch=args.sketch)
    images = getattr(anchors, "images", None)
    if images is None:
        return cfg
    m, sentence = default_sketch(images.shape[0], cfg.steps, images[0].numel())
    if m is not None:
        print(sentence, file=sys.stderr)
        return replace(cfg, sketch=m)
    return cfg


def _store(args: argparse.Namespace):
    return FieldStore(args.store)


def _fields_for(args: argparse.Namespace, specs: Sequence[str]) -> tuple[list, list, Any, Any]:
    """Load models and anchors, then each model's cached field (computed with a progress bar)."""
    cfg, store = _config(args), _store(args)
    anchors = load_anchors(args.anchors, size=getattr(args, "size", None))
    cfg = _with_sketch(args, cfg, anchors)
    if getattr(args, "cluster", None):
        return None, _cluster_fields(args, specs, anchors, cfg, store), anchors, cfg
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


def _cluster_fields(args: argparse.Namespace, specs: Sequence[str], anchors: Any, cfg: Any, store: Any) -> list:
    """Each model's field extracted on the Ray cluster `--cluster` names (service/cluster.py), one bar per model."""
    from .service.cluster import extract_on_cluster, failure_sentence

    bars: dict[int, _Progress] = {}

    def model_progress(index: int, done: int, total: int) -> None:
        bar = bars.setdefault(index, _Progress(specs[index], enabled=not args.quiet))
        bar(done, total)

    try:
        results = extract_on_cluster(specs, anchors, cfg, cluster=args.cluster, store=store,
                                     model_progress=model_progress, load_kwargs=_model_kwargs(args))
    finally:
        for bar in bars.values():
            bar.close()
    problem = failure_sentence(results)
    if problem:
        raise UserError(problem)
    return [r.field for r in results]


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
    _handles, fields, anchors, cfg = _fields_for(args, args.models)
    rows = [{"model": spec, "fingerprint": str(f.manifest.get("fingerprint", ""))[:16], "key": f.key[:16],
             "shape": "x".join(map(str, f.shape)), "seconds": f.manifest.get("seconds"),
             "path": str(f.path)}
            for spec, f in zip(args.models, fields)]
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
    cfg = _config(args) if args.custom_config else None
    if cfg is None and args.sketch is not None:
        from dataclasses import replace

        from .analysis.triage import DEFAULT_FIELD

        cfg = replace(DEFAULT_FIELD, sketch=args.sketch)
    if args.cluster:  # the fields on the cluster first; triage then finds them in the store
        from .service.cluster import prefetch_triage_fields

        prefetch_triage_fields(args.victim, args.suspect, args.reference or None, cfg=cfg, store=_store(args),
                               cluster=args.cluster, progress=lambda done, total, _label="": bar(done, total),
                               **kwargs)
    try:
        report = triage(args.victim, args.suspect, references=args.reference or None,
                        cfg=cfg, store=_store(args),
                        progress=bar, rule=args.rule, **kwargs)
    finally:
        bar.close()
    report.command = "modelgif " + " ".join(shlex.quote(a) for a in getattr(args, "argv", []))
    if args.report:
        from .analysis.report import write_triage_report

        write_triage_report(report, args.report, store=_store(args))
    print(json.dumps(report.to_dict(), indent=2) if args.format == "json" else report.to_text())
    return 0


def cmd_nearest(args: argparse.Namespace) -> int:
    from .analysis.nearest import nearest_models

    anchors = load_anchors(args.anchors or "digits:64", size=args.size)
    cfg = _with_sketch(args, _config(args), anchors)
    among = args.among[0] if args.among in (["store"], ["zoo"]) else args.among
    bar = _Progress("nearest", enabled=not args.quiet)
    try:
        result = nearest_models(load_model(args.model, **_model_kwargs(args)), among, k=args.k, anchors=anchors,
                                cfg=cfg, store=_store(args), progress=bar)
    finally:
        bar.close()
    if args.format == "json":
        print(json.dumps(result, indent=2))
    elif not result["results"]:
        print(f"No stored model to compare {result['query']} with on {result['anchors']} with this config.")
    else:
        print(_emit(result["results"], "table", ["rank", "model", "distance", "family", "role"]))
        print(f"{result['shortlist']} of {result['candidates']} candidates re-ranked with exact field distances.")
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
    if args.zoo_command == "verify":
        return _zoo_verify(args)
    rows = zoo.list_zoo(size=args.size)
    if not rows:
        raise UserError(f"The {args.size} zoo is not built yet; run `modelgif zoo build --size {args.size}`.")
    print(_emit(rows, args.format, ["name", "role", "family", "arch", "attack", "parent", "test_accuracy"]))
    return 0


def _zoo_verify(args: argparse.Namespace) -> int:
    """Check the shipped files against the manifest, then retrain them and compare: non-zero exit and one
    sentence per file changed after the build or rebuild beyond float rounding."""
    if args.all and args.models:
        raise UserError("Give model names or --all, not both.")
    names = [r.name for r in zoo.recipes(args.size)] if args.all else (args.models or None)
    try:
        rows = zoo.verify_zoo(args.size, names=names, progress=None if args.quiet else _zoo_bar("verify"))
    except zoo.ManifestMismatch as err:
        print("\n".join(err.changed))
        return 1
    bad = [r for r in rows if not r["ok"]]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            if not row["exact"]:
                print(zoo.verify_message(row))
        exact = sum(r["exact"] for r in rows)
        print(f"{exact} of {len(rows)} rebuilt {args.size} zoo models match the shipped files "
              f"({zoo.shipped_zoo_root(args.size)}) bitwise, {len(rows) - exact - len(bad)} within float rounding, "
              f"{len(bad)} not.")
    return 1 if bad else 0


def _zoo_bar(desc: str):
    from tqdm import tqdm

    bar = None  # made on the first report, so a command that fails first prints no empty bar

    def progress(done: int, total: int, name: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, file=sys.stderr, unit="model")
        bar.total, bar.n = total, done
        bar.set_postfix_str(name)
        bar.refresh()
        if done == total:
            bar.close()

    return progress


def cmd_bench(args: argparse.Namespace) -> int:
    if args.bench_command == "demo":
        from .service.demo_bench import format_demo_bench, run_demo_bench

        result = run_demo_bench(anchors=args.anchors, steps=args.steps, device=args.device, train=args.train,
                                slots=_ints(args.slots) if args.slots else ())
        print(json.dumps(result, indent=2) if args.format == "json" else format_demo_bench(result))
        return 0
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
    if args.bench_command == "scale":
        return _bench_scale(args)
    import importlib

    bench = importlib.import_module(f".bench.{args.bench_command}", __package__)
    result = bench.run_bench(quick=args.quick, seeds=getattr(args, "seeds", None))
    print(json.dumps(result, indent=2) if args.format == "json" else bench.format_table(result))
    return 0


def _bench_scale(args: argparse.Namespace) -> int:
    """Sketch and signature sections from bench.scale; the cluster section from the service layer."""
    import importlib

    from .bench.scale import format_scale, measure_scale

    def note(message: str) -> None:
        if not args.quiet:
            print(f"bench scale: {message}", file=sys.stderr)

    result = measure_scale(size=args.size, progress=note)
    try:  # the ray helper's measure function; absent until it is merged, and then the key is left out
        cluster = importlib.import_module(".service.cluster", __package__)
    except ImportError:
        cluster = None
    if cluster is not None and hasattr(cluster, "bench_cluster"):
        note("cluster")
        result["cluster"] = cluster.bench_cluster(quick=args.size == "small")
    print(json.dumps(result, indent=2) if args.format == "json" else format_scale(result))
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
    p.add_argument("--cluster", default=None, metavar="local|ray://HOST:PORT",
                   help="extract on a Ray cluster: 'local' starts one on this machine; a remote address needs "
                   "its token in RAY_AUTH_TOKEN (needs the extra: pip install modelgif-explorer[cluster])")
    p.add_argument("--autocast", default=None, choices=["none", "tf32", "bf16", "fp16"],
                   help="arithmetic on GPU: none = full fp32 (the default; same field as on the CPU), "
                        "tf32, or a bf16/fp16 autocast forward")
    p.add_argument("--sketch", type=int, default=None, metavar="M",
                   help="project each (anchor, step) gradient to M dims on the device (0: the full field; "
                        "default: full unless the field would exceed $MODELGIF_SKETCH_ABOVE_MB, 256 MB)")
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
    p.add_argument("--rule", default=TRIAGE_RULES[0], choices=TRIAGE_RULES,
                   help="verdict rule: joint null of the components against references of the suspect's "
                        "architecture, led by the strongest single component, with the weight-space component "
                        "(same architecture) and where the suspect's own boundary lies, the field's tail Student-t "
                        "(joint-arch-w-shift-ft10, the default); joint-arch-w-shift: every component Gaussian; "
                        "joint-arch-w: without the boundary shift; joint-arch: without either; "
                        "joint-arch-two(-ws, -w): two components must agree (-ws: the weights as a stage of "
                        "their own, -w: inside the statistic); joint: against all references; minz: the "
                        "Sidak-corrected minimum z")
    p.add_argument("--report", default=None, metavar="PATH",
                   help="also write a self-contained HTML evidence report to PATH")
    _add_common(p, formats=("table", "json"))
    p.set_defaults(func=cmd_triage)

    p = sub.add_parser("nearest", help="the stored models closest to a model (signature shortlist, exact re-rank)")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--among", nargs="+", default=["store"], metavar="store|zoo|MODEL",
                   help="candidates: every stored field of this config (store), the built-in zoo, or models")
    p.add_argument("-k", type=_positive_int, default=10, help="how many (default 10)")
    _add_field_options(p, anchors_required=False)
    _add_common(p, formats=("table", "json"))
    p.set_defaults(func=cmd_nearest)

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
    for name in ("build", "list", "verify"):
        zp = zsub.add_parser(name, help={"build": "train the missing models into the store",
                                         "list": "the models (the store's, else the shipped assets')",
                                         "verify": "check shipped models against their manifest and a rebuild"}[name])
        zp.add_argument("--size", default="small", choices=["small", "full"])
        if name == "build":
            zp.add_argument("--force", action="store_true", help="rebuild models that exist")
        if name == "verify":
            zp.add_argument("models", nargs="*", metavar="MODEL",
                            help="zoo models to retrain (default: the cheapest model of each recipe method)")
            zp.add_argument("--all", action="store_true", help="every model of the zoo")
        _add_common(zp)
    p.set_defaults(func=cmd_zoo)

    p = sub.add_parser("bench", help="benchmarks (print ratios measured side by side)")
    bsub = p.add_subparsers(dest="bench_command", required=True, parser_class=_Parser)
    bp = bsub.add_parser("scale", help="sketch and signature accuracy and speed (and the cluster's, with ray)")
    bp.add_argument("--format", default="table", choices=["table", "json"])
    bp.add_argument("--size", default="small", choices=["small", "full"],
                    help="small: CI-sized (default); full: the run docs/SCALE.md records")
    bp.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    for name in ("ip", "speed", "relatedness", "unlearning", "map"):
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
    bp = bsub.add_parser("demo", help="'Run the demo' from an empty store to 'Demo ready', the app's way")
    bp.add_argument("--format", default="table", choices=["table", "json"])
    bp.add_argument("--anchors", default="digits:64", help="the app's default anchors")
    bp.add_argument("--steps", type=_positive_int, default=50, help="the app's default K")
    bp.add_argument("--device", default="auto")
    bp.add_argument("--train", action="store_true", help="also without the shipped assets (trains the zoo: minutes)")
    bp.add_argument("--slots", default=None,
                    help="e.g. 1,2: one run per runner setting (jobs at once), side by side; default: the runner's")
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
