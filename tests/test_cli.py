"""The `modelgif` command end to end (real subprocesses) and the public API's shape."""

import ast
import json
from pathlib import Path

import timm
import torch
from conftest import ROOT, run_cli

import modelgif_core
from modelgif_core import InputConfig, save_model_dir
from modelgif_core.cli import main


class Result:
    def __init__(self, returncode, out, err):
        self.returncode, self.stdout, self.stderr = returncode, out, err


def cli(capsys, *args):
    """The same `main` the console script runs, in-process (a subprocess costs a torch import)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def zoo_like(tmp_path, name, seed):
    torch.manual_seed(seed)
    module = timm.create_model("test_resnet", num_classes=10)
    cfg = InputConfig(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3)
    return f"local-dir:{save_model_dir(module, tmp_path / name, arch='test_resnet', num_classes=10, input_cfg=cfg)}"


def test_distance_json_contract_and_cache_commands(tmp_path, capsys):
    a, b = zoo_like(tmp_path, "a", 0), zoo_like(tmp_path, "b", 1)
    store = tmp_path / "store"
    args = ["--anchors", "digits:4", "--steps", "3", "--store", store, "-q"]
    result = run_cli("distance", a, b, a, "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["models"] == [a, b, a]
    matrix = out["matrix"]
    assert matrix[0][0] == 0 and matrix[0][2] == 0 and matrix[0][1] == matrix[1][0] > 0
    assert out["config"]["steps"] == 3 and out["config"]["method"] == "gausslegendre"

    table = cli(capsys, "distance", a, b, *args)  # cached now: same numbers, as a table
    assert table.returncode == 0 and f"{matrix[0][1]:.4f}" in table.stdout

    csv_out = cli(capsys, "distance", a, b, "--format", "csv", *args)
    assert csv_out.stdout.splitlines()[0] == f"model,{a},{b}"

    listed = cli(capsys, "cache", "ls", "--format", "json", "--store", store)
    rows = json.loads(listed.stdout)
    assert len(rows) == 2 and {r["model_name"] for r in rows} == {"a", "b"}
    removed = cli(capsys, "cache", "rm", rows[0]["key"][:12], "--store", store)
    assert "removed 1" in removed.stdout
    assert cli(capsys, "cache", "gc", "--store", store).returncode == 0


def test_extract_reports_fields(tmp_path, capsys):
    a = zoo_like(tmp_path, "a", 0)
    result = cli(capsys, "extract", a, "--anchors", "noise:2:0", "--steps", "2", "--format", "json",
                     "--store", tmp_path / "s", "-q")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["shape"] == "2x2x3072" and Path(row["path"]).is_file()


def test_user_mistakes_are_one_sentence_and_exit_2(tmp_path, capsys):
    cases = [
        ["distance", "no_such_model_xyz", "--anchors", "digits:4"],
        ["distance", "test_resnet", "--anchors", "pictures:4"],
        ["distance", f"local-dir:{tmp_path}", "--anchors", "digits:4"],
        ["extract", "test_resnet", "--anchors", f"dir:{tmp_path}"],
        ["distance", "test_resnet", "--anchors", "digits:4", "--method", "simpson"],
        ["bench", "nothing"],
    ]
    for args in cases:
        result = cli(capsys, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("modelgif: error: ") and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_public_api_names_from_design():
    for name in ["load_model", "load_anchors", "FieldConfig", "extract_field", "field_distance",
                 "distance_matrix", "cached_field", "FieldStore", "embed_distances", "triage", "UserError"]:
        assert hasattr(modelgif_core, name), name


def test_core_never_imports_streamlit():
    """The layering rule of DESIGN §2, checked on the source (no import can sneak in lazily)."""
    offenders = []
    for path in (ROOT / "modelgif_core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "streamlit"]
    assert offenders == []


def test_progress_to_a_pipe_is_a_few_lines_not_one_per_chunk(capsys):
    """Extraction reports progress after every chunk of points; written to a log file or a pipe, the bar
    must redraw at most every half second, not once per call (it printed every one of them before)."""
    from modelgif_core.cli import _Progress

    progress = _Progress("field")
    capsys.readouterr()
    for done in range(0, 100_001, 100):  # 1001 calls in well under a second
        progress(done, 100_000)
    progress.close()
    err = capsys.readouterr().err
    assert "field" in err
    assert 1 <= err.count("\r") <= 10, err.count("\r")
