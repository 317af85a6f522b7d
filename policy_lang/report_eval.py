"""Rendering evaluation results: the JSON shape of DESIGN.md §5, CSV and a terminal table."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from policy_lang.interp import Result
from policy_lang.pipeline import layer_amounts, money


def to_json(result: Result) -> str:
    layers = result.layers
    claims = [{"claim_id": c.claim_id, "person_id": c.person_id, "payments": layer_amounts(layers, c.payments),
               "out_of_pocket": money(c.out_of_pocket)} for c in result.claims]
    persons = [{"person_id": p.person_id, "year": p.year, "payments": layer_amounts(layers, p.payments),
                "out_of_pocket": money(p.out_of_pocket), "alerts": list(p.alerts)} for p in result.persons]
    totals = [sum(c.payments[i] for c in result.claims) for i in range(len(layers))]
    doc: dict[str, Any] = {
        "claims": claims, "persons": persons,
        "totals": {"payments": layer_amounts(layers, tuple(totals)),
                   "out_of_pocket": money(sum(c.out_of_pocket for c in result.claims))},
    }
    subsidies = [{"person_id": p.person_id, "year": p.year, "subsidy": sid, "amount": money(amount)}
                 for p in result.persons for sid, amount in p.subsidies]
    if subsidies:
        doc["premium_subsidies"] = subsidies
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


def to_csv(result: Result) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["claim_id", "person_id", *result.layers, "out_of_pocket"])
    for c in result.claims:
        writer.writerow([c.claim_id, c.person_id, *(money(p) for p in c.payments), money(c.out_of_pocket)])
    return out.getvalue()


def to_table(result: Result) -> str:
    head = ["claim", "person", *result.layers, "out_of_pocket"]
    rows = [[c.claim_id, c.person_id, *(money(p) for p in c.payments), money(c.out_of_pocket)]
            for c in result.claims]
    totals = [sum(c.payments[i] for c in result.claims) for i in range(len(result.layers))]
    rows.append(["total", "", *(money(t) for t in totals), money(sum(c.out_of_pocket for c in result.claims))])
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                                              strict=True)))

    body = [line(head), line(["-" * w for w in widths]), *(line(r) for r in rows[:-1]),
            line(["-" * w for w in widths]), line(rows[-1])]
    return "\n".join(body) + "\n"
