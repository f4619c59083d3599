"""ModelGiF Explorer's core: Model Gradient Fields (Song et al., ICCV 2023) for timm models.

The public API; the app, the CLI and the tests import from here only.

    from modelgif_core import load_model, load_anchors, FieldConfig, extract_field, field_distance
    m = load_model("zoo:resnet-victim")          # or a timm name, local-dir:PATH, a checkpoint file
    x = load_anchors("digits:64")
    phi = extract_field(m, x, FieldConfig(steps=50))   # [N, K, 3*H*W]

Where things live (each layer imports only itself and the layers below it; DESIGN §2):

    engine/     the method: models, anchors, fields, distance, the store, embeddings
    zoo/        the built-in zoo of digit classifiers: recipes, training, build, paths
    analysis/   questions answered with fields: IP triage (calibration, output probes), unlearning
    bench/      measurements (speed, ip, relatedness, unlearning), never used by the app's answers
    service/    the background worker that owns the device, and its tasks
    viz/        plotly figures, pure functions of numpy arrays
    cli.py      the `modelgif` command

Names from viz, bench and service load on first use (they import plotly and the benches).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from . import zoo  # registers the zoo: spec scheme with the engine
from .analysis.calibration import RULES as TRIAGE_RULES
from .analysis.calibration import JointRule, TriageRule
from .analysis.nearest import nearest_models
from .analysis.triage import TriageReport, Verdict, triage
from .analysis.unlearning import UnlearningReport, verify_unlearning
from .engine.anchors import AnchorSet, load_anchors
from .engine.bigzoo import LAYOUT_DIMS, SignatureSetInfo, load_signature_set, save_signature_set, signature_sets
from .engine.blocks import Blocks, block_distances, signature_blocks
from .engine.cache import cached_field, compute_field, field_store_key
from .engine.device import resolve_device
from .engine.distance import DistanceTable, distance_matrix, distances_to, field_distance, unit_field
from .engine.embedding import (
    Embedding,
    embed_distances,
    embed_signatures,
    umap_cache_is_warm,
    unit_signatures,
    warm_umap,
)
from .engine.errors import UserError
from .engine.fields import BASELINES, METHODS, TARGETS, FieldConfig, extract_field, make_baseline, quadrature
from .engine.models import (
    InputConfig,
    ModelHandle,
    hub_pretrained_cfg,
    list_hub_models,
    load_model,
    preprocess,
    save_model_dir,
)
from .engine.progress import Progress
from .engine.sketch import (
    SIGNATURE_DIMS,
    SignatureIndex,
    default_sketch,
    fold_signatures,
    projection,
    signature,
    signature_distances,
    signature_gram,
)
from .engine.store import FieldStore, StoredField, default_store_root, field_key
from .zoo import assets_root, build_zoo, ensure_zoo, list_zoo, shipped_zoo_root, verify_zoo, zoo_root

try:
    __version__ = version("modelgif-explorer")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

# name -> module (relative to this package) for the names loaded on first use
_LAZY = {
    "figures": "viz.figures", "cluster_order": "viz.figures",
    "last_relatedness_result": "bench.relatedness", "zoos_truth_name": "bench.relatedness",
    "Worker": "service.worker", "Job": "service.worker", "get_worker": "service.worker",
    "QUEUED": "service.worker", "RUNNING": "service.worker", "DONE": "service.worker", "FAILED": "service.worker",
    "demo_task": "service.tasks", "probe_task": "service.tasks", "relatedness_task": "service.tasks",
    "TASK_ZOO_KEY": "service.tasks",
    "extract_on_cluster": "service.cluster", "ClusterField": "service.cluster", "cluster_from_env": "service.cluster",
    "TaskSpec": "service.tasks", "triage_task": "service.tasks", "lineage_task": "service.tasks",
    "unlearning_task": "service.tasks",
    "zoo_task": "service.tasks", "hold_task": "service.tasks",
    "JobTable": "service.jobs", "QueueFull": "service.jobs",
    "ServerWorker": "service.runner", "server_worker": "service.runner",
    "family_graph": "analysis.lineage", "FamilyGraph": "analysis.lineage", "family_table": "analysis.lineage",
    "render_triage_report": "analysis.report", "write_triage_report": "analysis.report",
}

if TYPE_CHECKING:  # what the lazy names are, for IDEs and type checkers
    from .analysis.lineage import FamilyGraph, family_graph, family_table
    from .analysis.report import render_triage_report, write_triage_report
    from .bench.relatedness import last_relatedness_result, zoos_truth_name
    from .service.cluster import ClusterField, cluster_from_env, extract_on_cluster
    from .service.jobs import JobTable, QueueFull
    from .service.runner import ServerWorker, server_worker
    from .service.tasks import (
        TASK_ZOO_KEY,
        TaskSpec,
        demo_task,
        hold_task,
        lineage_task,
        probe_task,
        relatedness_task,
        triage_task,
        unlearning_task,
        zoo_task,
    )
    from .service.worker import DONE, FAILED, QUEUED, RUNNING, Job, Worker, get_worker
    from .viz import figures
    from .viz.figures import cluster_order

__all__ = [
    # engine: models, anchors, fields, distances, the store
    "UserError", "Progress", "InputConfig", "ModelHandle", "load_model", "preprocess", "save_model_dir",
    "list_hub_models", "hub_pretrained_cfg", "resolve_device", "AnchorSet", "load_anchors",
    "BASELINES", "METHODS", "TARGETS", "FieldConfig", "extract_field", "make_baseline", "quadrature",
    "unit_field", "distance_matrix", "distances_to", "field_distance", "DistanceTable",
    "FieldStore", "StoredField", "field_key", "default_store_root", "cached_field", "field_store_key",
    "compute_field",
    "Embedding", "embed_distances", "warm_umap", "umap_cache_is_warm",
    "embed_signatures", "unit_signatures", "Blocks", "block_distances", "signature_blocks",
    "LAYOUT_DIMS", "SignatureSetInfo", "signature_sets", "save_signature_set", "load_signature_set",
    "signature", "signature_distances", "signature_gram", "SignatureIndex", "fold_signatures", "projection",
    "default_sketch", "SIGNATURE_DIMS",
    # zoo
    "zoo", "build_zoo", "ensure_zoo", "list_zoo", "zoo_root", "assets_root", "shipped_zoo_root", "verify_zoo",
    # analysis
    "triage", "TriageReport", "TriageRule", "JointRule", "TRIAGE_RULES", "Verdict", "verify_unlearning",
    "UnlearningReport",
    "nearest_models", "family_graph", "FamilyGraph", "family_table", "render_triage_report", "write_triage_report",
    # loaded on first use (the _LAZY table below): viz, bench, service
    "figures", "cluster_order", "last_relatedness_result", "zoos_truth_name",
    "Worker", "Job", "get_worker", "QUEUED", "RUNNING", "DONE", "FAILED",
    "demo_task", "probe_task", "relatedness_task", "TASK_ZOO_KEY",
    "extract_on_cluster", "ClusterField", "cluster_from_env",  # service/cluster.py (needs the extra `cluster`)
    "TaskSpec", "triage_task", "lineage_task", "unlearning_task", "zoo_task", "hold_task", "JobTable", "QueueFull",
    "ServerWorker", "server_worker",
    "__version__",
]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return module if name == "figures" else getattr(module, name)
    raise AttributeError(f"module 'modelgif_core' has no attribute {name!r}")
