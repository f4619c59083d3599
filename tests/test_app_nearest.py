"""The "Closest stored models" panel on the Models and Triage pages, through AppTest on a real store."""

from __future__ import annotations

from pathlib import Path

from _app_fixtures import write_tiny_model
from streamlit.testing.v1 import AppTest

from modelgif_core import FieldConfig, FieldStore, cached_field, distance_matrix, load_anchors, load_model

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_models_page_lists_the_closest_stored_models(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELGIF_HOME", str(tmp_path / "home"))
    specs = [write_tiny_model(tmp_path / f"tiny{i}", seed=i) for i in range(4)]
    anchors, cfg, store = load_anchors("digits:8"), FieldConfig(steps=8), FieldStore()
    fields = [cached_field(load_model(s), anchors, cfg, store) for s in specs[:3]]  # the 4th: not stored
    d = distance_matrix(fields)
    names = [load_model(s).name for s in specs]

    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"anchors": "digits:8", "steps": "8", "m": specs})
    at.run()
    at.switch_page("app_pages/models.py").run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[-1].value
    want = [names[j] for j in sorted((1, 2), key=lambda j: d[0, j])]
    assert list(table["model"]) == want  # the stored ones only, nearest first
    assert abs(float(table["distance"].iloc[0]) - d[0, [1, 2]].min()) < 1e-5
    assert any("ranked by exact field distance" in c.value for c in at.caption)

    at.selectbox(key="models_nearest_model").set_value(specs[3]).run()  # a model without a stored field
    assert not at.exception
    assert any("has no stored field" in c.value for c in at.caption)
