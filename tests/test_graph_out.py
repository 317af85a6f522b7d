"""Tests for policy_lang.graph_out: the JSON and Graphviz renderings of the evaluation graph."""

from __future__ import annotations

import datetime
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from policy_lang.graph import Graph, PIn, PTrue
from policy_lang.graph_out import jsonable, pred_text, quote, to_dot, to_json
from policy_lang.pipeline import build

GOLDEN = Path(__file__).parent / "golden" / "graph"
DAY = datetime.date(2020, 6, 1)

BASE = '''\
# 辽宁省城乡居民基本医疗保险待遇（假定基准）
policy liaoning_resident_base "辽宁省城乡居民基本医疗保险待遇（假定）"
  effective 2019-01-01 schemes resident source "assumed: shared/DOMAIN.md §3.1" {

  layer basic "基本医保统筹（住院）" fund basic_fund {
    scope kind = inpatient
    deductible by level 200 / 500 / 800 per admission
    when admission >= 2 { deductible ×50% }
    rate by level 85% / 75% / 60%
    cap 150000 per year
  }
  layer chronic_outpatient "门诊慢特病" fund basic_fund {
    scope kind = chronic_outpatient
    deductible 0 per year
    rate 60%
    cap 3000 per year
  }
  layer critical_illness "大病保险" fund critical_illness_fund {
    scope kind in (inpatient, chronic_outpatient)
    base after basic, chronic_outpatient
    deductible 12000 per year
    tiers { 0 to 50000: 60%; 50000 to 100000: 65%; above 100000: 70% }
    cap none
    by identity {
      tekun, orphan, dibao, relapse_poor { deductible 6000 per year  rate 70% }
    }
  }
  layer assistance "医疗救助" fund assistance_fund {
    scope kind in (inpatient, chronic_outpatient)
    cap 10000 per year
    by identity best {
      tekun, orphan { rate 70% }
      dibao, registered_poor { rate 60% }
    }
  }
  test "一般居民三级医院住院 10万" {
    person p1 { scheme = resident }
    claim c1 { person = p1, date = 2019-03-01, kind = inpatient, level = 3, total = 100000, eligible = 100000 }
    # basic: (100000-800)*60% = 59520; left 40480; critical: (40480-12000)=28480*60% = 17088
    expect c1 { basic = 59520, critical_illness = 17088, assistance = 0, out_of_pocket = 23392 }
  }
}
'''

# The same policy with a shared cap, and a layer title holding a quote and a backslash.
POOLED = BASE.replace('layer basic "基本医保统筹（住院）"', 'layer basic "基本 \\"统筹\\" a\\\\b"').replace(
    '  test "', '  shared cap basic_pool 160000 per year for basic, chronic_outpatient\n  test "')


def _graph(tmp_path: Path, source: str = BASE) -> Graph:
    path = tmp_path / "base.pol"
    path.write_text(source, "utf-8")
    return build(path).graph


@pytest.fixture
def graph(tmp_path: Path) -> Graph:
    return _graph(tmp_path)


def _epoch_at(doc: dict[str, Any], day: datetime.date) -> dict[str, Any]:
    epoch: dict[str, Any]
    for epoch in doc["epochs"]:
        if (epoch["start"] or "") <= day.isoformat() and (epoch["end"] is None or day.isoformat() < epoch["end"]):
            return epoch
    raise LookupError(day)


# ---- JSON ----------------------------------------------------------------------------------------
def test_json_round_trips_with_stable_top_level_keys(graph: Graph) -> None:
    text = to_json(graph, None)
    doc = json.loads(text)
    assert list(doc) == ["format", "units", "as_of", "policy", "title", "schemes", "funds", "layers",
                         "identities", "diseases", "columns", "epochs"]
    assert doc["units"]["money"].startswith("fen") and doc["units"]["rate"].startswith("ppm")
    assert text.endswith("}\n") and "辽宁省" in text  # ensure_ascii=False
    assert to_json(graph, None) == text


def test_json_layers_and_values(graph: Graph) -> None:
    doc = json.loads(to_json(graph, None))
    assert [layer["id"] for layer in doc["layers"]] == ["basic", "chronic_outpatient", "critical_illness",
                                                          "assistance"]
    assert doc["layers"][0]["node"] == "LayerInfo"
    basic = _epoch_at(doc, DAY)["layers"][0]
    pricing = basic["pricing"]["rules"][0]["value"]
    assert pricing == {"node": "Flat", "rate": {"node": "Lvl", "values": [850000, 750000, 600000]}}
    assert basic["cap_year"]["rules"][0]["value"] == {"node": "Lit", "value": 15000000}
    assert basic["deductible"]["rules"][0]["value"]["values"] == [20000, 50000, 80000]


def test_json_sets_are_sorted_lists_and_dates_iso(graph: Graph) -> None:
    doc = json.loads(to_json(graph, None))
    epoch = _epoch_at(doc, DAY)
    scope = epoch["layers"][2]["scope"]
    assert scope["items"][0] == {"node": "PIn", "field": "kind", "values": ["chronic_outpatient", "inpatient"]}
    assert epoch["start"] == "2019-01-01"
    tiers = epoch["layers"][2]["pricing"]["rules"][0]["value"]["tiers"]
    assert [t["rate"] for t in tiers] == [600000, 650000, 700000]
    assert tiers[-1]["high"] is None


def test_json_day_keeps_only_the_epoch_in_force(graph: Graph) -> None:
    full = json.loads(to_json(graph, None))
    one = json.loads(to_json(graph, DAY))
    assert len(full["epochs"]) == len(graph.epochs) > 1
    assert one["as_of"] == "2020-06-01"
    assert one["epochs"] == [_epoch_at(full, DAY)]


def test_jsonable_rejects_unknown_values() -> None:
    assert jsonable(frozenset({3, 10, 2})) == [2, 3, 10]
    with pytest.raises(TypeError):
        jsonable(object())


def test_json_golden(tmp_path: Path, update_golden: bool) -> None:
    text = to_json(_graph(tmp_path), DAY).replace(str(tmp_path), "<dir>")
    _check_golden(GOLDEN / "base.json", text, update_golden)


# ---- dot -----------------------------------------------------------------------------------------
def _balanced(dot: str) -> bool:
    depth = 0
    for ch in re.sub(r'"(?:[^"\\]|\\.)*"', '""', dot):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def test_dot_has_every_layer_and_balanced_braces(graph: Graph) -> None:
    dot = to_dot(graph, None)
    assert dot.startswith('digraph "liaoning_resident_base" {')
    assert _balanced(dot)
    for layer in graph.layers:
        assert f"{layer.id} {layer.title}" in dot
    assert dot.count("subgraph cluster_e") == len(graph.epochs) + sum(
        v is not None for e in graph.epochs for v in e.layers)


def test_dot_nodes_follow_evaluation_order(graph: Graph) -> None:
    dot = to_dot(graph, DAY)
    assert dot.count("subgraph cluster_e") == 1 + len(graph.layers)
    assert "e1_l2_scope -> e1_l2_identity -> e1_l2_base -> e1_l2_deductible -> e1_l2_pricing" in dot
    assert 'label="deductible: by level 200 / 500 / 800\\nif admission >= 2: value below × 50%\\n(per admission)"' in dot
    assert 'label="pricing: rate by level 85% / 75% / 60%"' in dot
    assert "e1_l2_base -> e1_l0_cap_year [style=dashed" in dot
    assert "identity: best of tekun, orphan, dibao, registered_poor" in dot


def test_dot_pools_and_escaping(tmp_path: Path) -> None:
    dot = to_dot(_graph(tmp_path, POOLED), DAY)
    assert 'label="1. basic 基本 \\"统筹\\" a\\\\b · basic_fund"' in dot
    assert 'shared cap basic_pool: 160000 per year' in dot
    assert "e1_pool0 -> e1_l0_cap_year" in dot and "e1_pool0 -> e1_l1_cap_year" in dot
    assert _balanced(dot)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_dot_is_accepted_by_graphviz(tmp_path: Path) -> None:
    for day in (None, DAY):
        done = subprocess.run(["dot", "-Tsvg"], input=to_dot(_graph(tmp_path, POOLED), day),
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr


def test_quote_and_pred_text() -> None:
    assert quote('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert pred_text(PTrue()) == "always"
    assert pred_text(PIn("kind", frozenset({"inpatient", "chronic_outpatient"}))) == \
        "kind in (chronic_outpatient, inpatient)"


def test_dot_golden(graph: Graph, update_golden: bool) -> None:
    _check_golden(GOLDEN / "base.dot", to_dot(graph, None), update_golden)


def _check_golden(path: Path, text: str, update: bool) -> None:
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
    assert text == path.read_text("utf-8")
