"""Summary: merged Stats -> the simulation's JSON document and its terminal table.

Amounts are strings with two decimals (yuan) as in `polc eval`; ratios are strings with four decimals.
Nothing that depends on the engine, the worker count or the clock goes into the document, so the same
seed gives byte-identical JSON everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np

from policy_lang.data import format_money
from policy_lang.graph import TargetNode
from simulator.compare import Comparison, Movers
from simulator.metrics import CATASTROPHIC_FEN, GROUP_ORDER, NO_GROUP, Arr, Stats, payout_ratios, percentile

Doc = dict[str, Any]


def ratio(numerator: int, denominator: int) -> str:
    if denominator == 0:
        return "0.0000"
    return str((Decimal(numerator) / Decimal(denominator)).quantize(Decimal("0.0001")))


def figures(stats: Stats, targets: Sequence[TargetNode]) -> Doc:
    """The figures of one policy on the population."""
    oop = np.sort(stats.oop_values())
    paid = sum(stats.layer_totals.values())
    return {
        "persons": stats.persons, "claimants": stats.claimants, "claims": stats.claims,
        "total_cost": format_money(stats.total_cost), "eligible_cost": format_money(stats.eligible_cost),
        "payments": {k: format_money(v) for k, v in stats.layer_totals.items()},
        "funds": {k: format_money(v) for k, v in sorted(stats.fund_totals().items())},
        "paid_total": format_money(paid),
        "out_of_pocket_total": format_money(stats.total_cost - paid),
        "out_of_pocket": {
            "claimants": len(oop),
            "mean": format_money(int(oop.sum()) // len(oop) if len(oop) else 0),
            "p50": format_money(percentile(oop, 50)), "p90": format_money(percentile(oop, 90)),
            "p99": format_money(percentile(oop, 99)),
            "histogram": oop_histogram(oop),
        },
        "catastrophic": [{"threshold": format_money(t), "persons": stats.catastrophic.get(t, 0)}
                         for t in CATASTROPHIC_FEN],
        "alerts": dict(sorted(stats.alerts.items())),
        "premium_subsidies": {k: {"persons": n, "amount": format_money(a)}
                              for k, (n, a) in sorted(stats.subsidies.items())},
        "groups": _groups(stats),
        "payout_ratios": [_payout(r) for r in payout_ratios(stats, targets)],
    }


# Out-of-pocket histogram bin edges in yuan (log-spaced); the last bin is open-ended.
OOP_BIN_EDGES_YUAN: tuple[int, ...] = (0, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)


def oop_histogram(sorted_oop: Arr) -> list[Doc]:
    """Claimants per out-of-pocket bin [low, high) from sorted fen values; `high` None for the last bin."""
    edges = np.array([e * 100 for e in OOP_BIN_EDGES_YUAN], dtype=np.int64)
    below = [int(n) for n in np.searchsorted(sorted_oop, edges, side="left")] + [len(sorted_oop)]
    highs: list[int | None] = [*OOP_BIN_EDGES_YUAN[1:], None]
    return [{"low": format_money(low * 100), "high": None if high is None else format_money(high * 100),
             "claimants": below[i + 1] - below[i]}
            for i, (low, high) in enumerate(zip(OOP_BIN_EDGES_YUAN, highs, strict=True))]


def _groups(stats: Stats) -> list[Doc]:
    order = {g: i for i, g in enumerate((*GROUP_ORDER, NO_GROUP))}
    rows = []
    for (group, scheme), g in sorted(stats.groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        rows.append({"group": group, "scheme": scheme, "persons": g.persons, "claimants": g.claimants,
                     "total_cost": format_money(g.total_cost), "eligible_cost": format_money(g.eligible_cost),
                     "payments": {k: format_money(v) for k, v in g.payments.items()},
                     "out_of_pocket": format_money(g.out_of_pocket)})
    return rows


def _payout(row: Mapping[str, Any]) -> Doc:
    return {"target": row["target"], "title": row["title"], "schemes": row["schemes"], "layers": row["layers"],
            "ratio": ratio(int(row["paid"]), int(row["eligible_cost"])),
            "minimum": ratio(int(row["minimum_ppm"]), 1_000_000), "by": row["by"],
            "met": int(row["ratio_ppm"]) >= int(row["minimum_ppm"])}


def changes(new: Doc, old: Doc) -> Doc:
    """Every amount's change (new − old), layer by layer and fund by fund (missing counts as 0)."""
    def delta(a: Mapping[str, str], b: Mapping[str, str]) -> dict[str, str]:
        keys = list(dict.fromkeys([*b, *a]))
        return {k: _sub(a.get(k, "0.00"), b.get(k, "0.00")) for k in keys}

    return {
        "payments": delta(new["payments"], old["payments"]),
        "funds": delta(new["funds"], old["funds"]),
        "paid_total": _sub(new["paid_total"], old["paid_total"]),
        "out_of_pocket_total": _sub(new["out_of_pocket_total"], old["out_of_pocket_total"]),
        "out_of_pocket": {k: _sub(new["out_of_pocket"][k], old["out_of_pocket"][k])
                          for k in ("mean", "p50", "p90", "p99")},
        "alerts": {k: new["alerts"].get(k, 0) - old["alerts"].get(k, 0)
                   for k in dict.fromkeys([*old["alerts"], *new["alerts"]])},
        "premium_subsidies": {k: _sub(new["premium_subsidies"].get(k, {}).get("amount", "0.00"),
                                      old["premium_subsidies"].get(k, {}).get("amount", "0.00"))
                              for k in dict.fromkeys([*old["premium_subsidies"], *new["premium_subsidies"]])},
    }


def _sub(a: str, b: str) -> str:
    return format_money(int(Decimal(a) * 100) - int(Decimal(b) * 100))


def movers(comparison: Comparison) -> Doc:
    def one(m: Movers) -> Doc:
        return {"winners": m.winners, "gained": format_money(m.gained), "losers": m.losers,
                "lost": format_money(m.lost)}

    order = {g: i for i, g in enumerate((*GROUP_ORDER, NO_GROUP))}
    return {
        "total": one(comparison.total),
        "by_group": {g: one(m) for g, m in sorted(comparison.by_group.items(), key=lambda kv: order[kv[0]])},
        "biggest_changes": [{"person_id": c.person_id, "group": c.group,
                             "old_out_of_pocket": format_money(c.old_out_of_pocket),
                             "new_out_of_pocket": format_money(c.new_out_of_pocket),
                             "change": format_money(c.delta)} for c in comparison.biggest],
    }


# ---- replicates: 95% intervals --------------------------------------------------------------------------
# Student t quantiles (0.975) for 1..30 degrees of freedom; beyond that the normal 1.96.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def interval(values: Sequence[Decimal]) -> Doc:
    """Mean and 95% confidence interval of the mean over replicates (t distribution)."""
    k = len(values)
    mean = sum(values, Decimal(0)) / k
    if k < 2:
        return {"mean": _fmt(mean), "low": _fmt(mean), "high": _fmt(mean), "replicates": k}
    var = sum(((v - mean) ** 2 for v in values), Decimal(0)) / (k - 1)
    t = Decimal(str(_T975[k - 2] if k - 1 <= len(_T975) else 1.96))
    half = t * var.sqrt() / Decimal(k).sqrt()
    return {"mean": _fmt(mean), "low": _fmt(mean - half), "high": _fmt(mean + half), "replicates": k}


def _fmt(d: Decimal) -> str:
    return str(d.quantize(Decimal("0.01")))


def replicate_intervals(docs: Sequence[Doc]) -> Doc:
    """95% intervals for the headline figures of K replicate runs (different seeds)."""
    def series(path: Sequence[str]) -> list[Decimal]:
        out = []
        for doc in docs:
            v: Any = doc
            for key in path:
                v = v.get(key, "0") if isinstance(v, dict) else "0"
            out.append(Decimal(str(v)))
        return out

    paths: list[tuple[str, ...]] = [("policy", "paid_total"), ("policy", "out_of_pocket_total"),
                                    ("policy", "out_of_pocket", "mean"), ("policy", "out_of_pocket", "p90")]
    paths += [("policy", "payments", layer) for layer in docs[0]["policy"]["payments"]]
    paths += [("policy", "funds", fund) for fund in docs[0]["policy"]["funds"]]
    if "changes" in docs[0]:
        paths += [("changes", "paid_total",), ("changes", "out_of_pocket_total")]
        paths += [("changes", "funds", fund) for fund in docs[0]["changes"]["funds"]]
        paths += [("winners_losers", "total", "winners"), ("winners_losers", "total", "losers")]
    return {".".join(p): interval(series(p)) for p in paths}


def to_json(doc: Doc) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


# ---- the terminal table ----------------------------------------------------------------------------------
def to_table(doc: Doc) -> str:
    lines: list[str] = []
    pol, base = doc["policy"], doc.get("baseline")
    pop = doc["population"]
    lines.append(f"{doc['meta']['policy']['title']} — {pop['persons']:,} persons, {pop['claims']:,} claims "
                 f"({pop['source']}, year {pop['year']})")
    if base is not None:
        lines.append(f"baseline: {doc['meta']['baseline']['title']}")
    lines.append("")
    lines.extend(_amount_rows("payments by layer", pol["payments"], base["payments"] if base else None))
    lines.extend(_amount_rows("payments by fund", pol["funds"], base["funds"] if base else None))
    o = pol["out_of_pocket"]
    lines.append(f"out of pocket per claimant: mean {o['mean']}, p50 {o['p50']}, p90 {o['p90']}, p99 {o['p99']}")
    lines.append("catastrophic: " + ", ".join(f"≥{c['threshold']}: {c['persons']:,}" for c in pol["catastrophic"]))
    if pol["alerts"]:
        lines.append("alerts: " + ", ".join(f"{k} {v:,}" for k, v in pol["alerts"].items()))
    for sid, s in pol["premium_subsidies"].items():
        lines.append(f"premium subsidy {sid}: {s['persons']:,} persons, {s['amount']}")
    for r in pol["payout_ratios"]:
        lines.append(f"{r['title']}: {r['ratio']} (target {r['minimum']} by {r['by']}: "
                     f"{'met' if r['met'] else 'not met'})")
    for a in doc.get("assumptions", []):
        lines.append(f"assumption: {a['parameter']} = {a['value']} ({a['source']})")
    if "winners_losers" in doc:
        t = doc["winners_losers"]["total"]
        lines.append(f"winners {t['winners']:,} (pay {t['gained']} less), losers {t['losers']:,} "
                     f"(pay {t['lost']} more)")
    return "\n".join(lines) + "\n"


def _amount_rows(title: str, new: Mapping[str, str], old: Mapping[str, str] | None) -> list[str]:
    keys = list(dict.fromkeys([*(old or {}), *new]))
    width = max((len(k) for k in keys), default=0)
    rows = [title]
    for k in keys:
        a = new.get(k, "0.00")
        if old is None:
            rows.append(f"  {k.ljust(width)}  {a:>18}")
        else:
            b = old.get(k, "0.00")
            change = _sub(a, b)
            signed = change if change.startswith("-") else "+" + change
            rows.append(f"  {k.ljust(width)}  {b:>18} → {a:>18}  ({signed:>18})")
    return rows
