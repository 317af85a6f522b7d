"""Renderings of the evaluation graph: stable JSON (`to_json`) and Graphviz dot (`to_dot`)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from policy_lang.graph import (
    Below,
    Epoch,
    Flat,
    Graph,
    IdentitySpec,
    LayerInfo,
    LayerVersion,
    Op,
    PAdmission,
    PAnd,
    PCompare,
    Period,
    PHas,
    PHolds,
    PIn,
    PNot,
    POr,
    Pred,
    Program,
    PSelected,
    PTrue,
    Rule,
    Tiered,
    Unit,
    Val,
)
from policy_lang.values import Kind, show, show_int

FORMAT = "polc-graph/1"
UNITS = {
    "money": "fen (integer; 100 = 1 yuan)",
    "rate": "ppm (integer; 1000000 = 100%)",
    "layer": "an integer naming a layer is its index in `layers` (settlement order, from 0)",
}


# ---- JSON ----------------------------------------------------------------------------------------
def to_json(graph: Graph, day: datetime.date | None) -> str:
    """The graph as JSON: with `day`, only the epoch in force that day.

    Top-level keys, in this order: format, units, as_of, policy, title, schemes, funds ({id, title}),
    layers, identities, diseases ({token in data: disease id}), columns, epochs. Every graph node is an
    object whose "node" key is its class name, followed by its fields in declaration order (see
    policy_lang/graph.py); dates are ISO strings, sets are sorted lists, money is integer fen and
    rates integer ppm. An epoch's `layers` is aligned with the top-level `layers` (null = not in force).
    """
    epochs = graph.epochs if day is None else (graph.epoch_at(day),)
    doc: dict[str, Any] = {
        "format": FORMAT,
        "units": UNITS,
        "as_of": day.isoformat() if day else None,
        "policy": graph.policy,
        "title": graph.title,
        "schemes": list(graph.schemes),
        "funds": [{"id": fund, "title": title} for fund, title in graph.funds],
        "layers": jsonable(graph.layers),
        "identities": list(graph.identities),
        "diseases": dict(graph.diseases),
        "columns": jsonable(graph.columns),
        "epochs": jsonable(epochs),
    }
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


def jsonable(obj: object) -> Any:
    """Graph data -> JSON-ready values: attrs nodes become {"node": class name, field: value, …}."""
    cls = type(obj)
    if attrs.has(cls):
        out: dict[str, Any] = {"node": cls.__name__}
        for field in attrs.fields(cls):
            out[field.name] = jsonable(getattr(obj, field.name))
        return out
    if isinstance(obj, datetime.date):
        return obj.isoformat()
    if isinstance(obj, frozenset):
        return [jsonable(v) for v in sorted(obj, key=lambda v: (type(v).__name__, v))]
    if isinstance(obj, (tuple, list)):
        return [jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    raise TypeError(f"cannot render {type(obj).__name__} as JSON")


# ---- dot -----------------------------------------------------------------------------------------
def to_dot(graph: Graph, day: datetime.date | None) -> str:
    """The graph as Graphviz dot: a cluster per epoch (only the one in force on `day`, if given),
    in it a cluster per layer in settlement order whose nodes follow the evaluation order
    (scope → identity → base → deductible → pricing → caps → accumulator); dashed edges from a base
    to the layers it subtracts; shared caps linked to their layers."""
    epochs = list(enumerate(graph.epochs))
    if day is not None:
        chosen = graph.epoch_at(day)
        epochs = [(n, e) for n, e in epochs if e is chosen]
    lines = [f"digraph {quote(graph.policy)} {{",
             f"  label={quote(_graph_label(graph, day))};",
             "  labelloc=t;",
             "  node [shape=box];"]
    for n, epoch in epochs:
        lines.extend(_epoch(graph, n, epoch))
    lines.append("}")
    return "\n".join(lines) + "\n"


def quote(text: str) -> str:
    """A dot double-quoted string; a newline becomes a centred line break."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _graph_label(graph: Graph, day: datetime.date | None) -> str:
    label = f"{graph.policy} {graph.title}".strip()
    return f"{label}\nas of {day.isoformat()}" if day else label


def _epoch(graph: Graph, n: int, epoch: Epoch) -> Iterator[str]:
    yield f"  subgraph cluster_e{n} {{"
    yield f"    label={quote(_epoch_label(epoch))};"
    chains: dict[int, list[str]] = {}
    for i, (info, version) in enumerate(zip(graph.layers, epoch.layers, strict=True)):
        if version is not None:
            nodes = _layer_nodes(version, tuple(layer.id for layer in graph.layers))
            chains[i] = [f"e{n}_l{i}_{key}" for key, _ in nodes]
            yield from _layer(n, i, info, nodes)
    for i, version in enumerate(epoch.layers):
        for j in version.base_from if version is not None else ():
            if j in chains:
                yield f"    e{n}_l{i}_base -> {chains[j][-1]} [style=dashed, constraint=false, label=\"minus\"];"
    yield from _pools(n, epoch, chains)
    yield "  }"


def _epoch_label(epoch: Epoch) -> str:
    start = epoch.start.isoformat() if epoch.start else "…"
    end = epoch.end.isoformat() if epoch.end else "…"
    lines = [f"in force {start} to {end} (end exclusive)"]
    if epoch.documents:
        lines.append("documents: " + ", ".join(epoch.documents))
    if epoch.params:
        lines.append("params: " + ", ".join(f"{k} = {'unspecified' if v is None else v}"
                                            for k, v in epoch.params))
    return "\n".join(lines)


def _layer(n: int, i: int, info: LayerInfo, nodes: list[tuple[str, str]]) -> Iterator[str]:
    yield f"    subgraph cluster_e{n}_l{i} {{"
    yield f"      label={quote(f'{i + 1}. {info.id} {info.title} · {info.fund}')};"
    ids = [f"e{n}_l{i}_{key}" for key, _ in nodes]
    for node_id, (_, label) in zip(ids, nodes, strict=True):
        yield f"      {node_id} [label={quote(label)}];"
    yield "      " + " -> ".join(ids) + ";"
    yield "    }"


def _pools(n: int, epoch: Epoch, chains: dict[int, list[str]]) -> Iterator[str]:
    for k, pool in enumerate(epoch.pools):
        label = f"shared cap {pool.id}: {show(pool.cap, 'money')} per year"
        yield f"    e{n}_pool{k} [shape=ellipse, label={quote(label)}];"
        for i in pool.layers:
            if i in chains:
                cap = next((c for c in chains[i] if c.endswith("_cap_year")), chains[i][-1])
                yield f"    e{n}_pool{k} -> {cap} [style=dotted];"


def _layer_nodes(v: LayerVersion, layer_ids: tuple[str, ...]) -> list[tuple[str, str]]:
    """(key, label) of a layer version's nodes, in evaluation order; empty settings are left out."""
    nodes = [("scope", "scope: " + pred_text(v.scope))]
    if v.identity is not None:
        nodes.append(("identity", _identity_label(v.identity)))
    nodes.append(("base", _base_label(v, layer_ids)))
    optional = [
        ("deductible", _program("deductible", v.deductible, _money) + _periods(v.period)),
        ("pricing", _program("pricing", v.pricing, _pricing) + _program("bonus", v.bonus, _bonus)),
        ("cap_claim", _program("cap per claim", v.cap_claim, _money)),
        ("cap_year", _program("cap per year", v.cap_year, _money)),
        ("accumulator", _program("accumulator", v.accumulator, str)),
    ]
    nodes.extend((key, "\n".join(label)) for key, label in optional if label)
    return nodes


def _identity_label(spec: IdentitySpec) -> str:
    how = "best of" if spec.precedence == "best" else "first held of"
    lines = [f"identity: {how} {', '.join(spec.order)}"]
    lines += [f"treat {held} as {used}" for held, used in spec.mapping if held != used]
    return "\n".join(lines)


def _base_label(v: LayerVersion, layer_ids: tuple[str, ...]) -> str:
    text = "base: eligible cost"
    if v.base_from:
        text += " minus " + ", ".join(layer_ids[i] for i in v.base_from)
    if v.base_plus:
        text += " plus " + ", ".join(v.base_plus)
    return text


def _program(title: str, program: Program[Any], render: Callable[[Any], str]) -> list[str]:
    """`title: default value`, then one `if condition: value` line per more specific rule."""
    if not program.rules:
        return []
    lines = [f"{title}: {value}" if cond is None else f"if {cond}: {value}"
             for cond, value in _merged(program.rules, render)]
    if not isinstance(program.rules[0].pred, PTrue):
        lines.insert(0, f"{title}:")
    return lines


def _merged(rules: tuple[Rule[Any], ...], render: Callable[[Any], str]) -> list[tuple[str | None, str]]:
    """(condition or None for the default, value) per rule; adjacent identity-schedule rules with the
    same value become one (`if identity schedule orphan / tekun: rate 70%`)."""
    out: list[tuple[str | None, str, frozenset[str]]] = []
    for rule in rules:
        value = render(rule.value)
        ids = rule.pred.identities if isinstance(rule.pred, PSelected) else frozenset()
        if ids and out and out[-1][2] and out[-1][1] == value:
            ids = ids | out.pop()[2]
        cond = None if isinstance(rule.pred, PTrue) else _selected(ids) if ids else pred_text(rule.pred)
        out.append((cond, value, ids))
    return [(cond, value) for cond, value, _ in out]


def _selected(identities: frozenset[str]) -> str:
    return f"identity schedule {' / '.join(sorted(identities))}"


def _periods(program: Program[Period]) -> list[str]:
    periods = {rule.value for rule in program.rules}
    if len(periods) == 1:
        return [f"(per {periods.pop()})"]
    return _program("period", program, lambda p: f"per {p}")


def _money(value: Val | None) -> str:
    return "none" if value is None else _show(value, "money")


def _show(value: Val, kind: Kind) -> str:
    text = show(value, kind)
    return text.replace("(value below)", "value below") if isinstance(value, (Below, Op)) else text


def _pricing(pricing: Flat | Tiered | Unit | None) -> str:
    match pricing:
        case None:
            return "none"
        case Flat(rate=rate):
            return "rate " + _show(rate, "rate")
        case Tiered(axis=axis, tiers=tiers):
            parts = [f"{_fen(t.low)} to {'…' if t.high is None else _fen(t.high)}: {show_int(t.rate, 'rate')}"
                     for t in tiers]
            return f"tiers on {axis}: " + "; ".join(parts)
        case Unit(amount=amount, column=column):
            return f"{_show(amount, 'money')} per {column}"
    raise AssertionError(pricing)  # pragma: no cover


def _bonus(bonus: Any) -> str:
    return "none" if bonus is None else f"+{_show(bonus.rate, 'rate')} on {bonus.column}"


def _fen(fen: int) -> str:
    return show_int(fen, "money")


def pred_text(pred: Pred) -> str:
    """A predicate as a short readable condition: `kind in (inpatient) and scheme = resident`."""
    match pred:
        case PTrue():
            return "always"
        case PAnd(items=items):
            return " and ".join(_grouped(p) for p in items)
        case POr(items=items):
            return " or ".join(_grouped(p) for p in items)
        case PNot(item=item):
            return "not " + _grouped(item)
        case PCompare(field=field, op=op, value=value):
            return f"{field} {op} {_atom(value)}"
        case PIn(field=field, values=values):
            return f"{field} in ({_atoms(values)})"
        case PHas(field=field, values=values, all=every):
            return f"{field} has {'all' if every else 'any'} ({_atoms(values)})"
        case PHolds(identities=identities):
            return f"holds any ({_atoms(identities)})"
        case PSelected(identities=identities):
            return _selected(identities)
        case PAdmission(op=op, value=value):
            return f"admission {op} {value}"
    raise AssertionError(pred)  # pragma: no cover


def _grouped(pred: Pred) -> str:
    text = pred_text(pred)
    return f"({text})" if isinstance(pred, (PAnd, POr)) else text


def _atom(value: int | str | bool) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _atoms(values: frozenset[Any]) -> str:
    return ", ".join(_atom(v) for v in sorted(values, key=lambda v: (type(v).__name__, v)))
