"""Explain: the reference evaluator's trace for one person, as text a policy writer can check by hand."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from fractions import Fraction

from policy_lang.data import Claim, Dataset, format_money
from policy_lang.graph import Cite, Graph
from policy_lang.interp import LayerTrace, Options, Result, round_half_up


def explain(graph: Graph, data: Dataset, result: Result, options: Options) -> str:
    person = data.persons[0]
    ids = ", ".join(g.identity + (f" from {g.since}" if g.since else "") for g in person.identities) or "none"
    lines = [f"Person {person.person_id}: {person.scheme}{', retired' if person.retired else ''}; "
             f"identities: {ids}",
             f"Policy: {graph.title} ({graph.policy})"]
    if options.as_of:
        lines.append(f"Rules as of {options.as_of} for every claim")
    titles = {layer.id: layer.title for layer in graph.layers}
    funds = {layer.id: layer.fund for layer in graph.layers}
    by_id = {c.claim_id: c for c in result.claims}
    claims = sorted(data.claims, key=lambda c: (c.date, c.claim_id))
    for claim in claims:
        lines.append("")
        lines.extend(_claim_header(graph, claim, options))
        for trace in result.traces.get(claim.claim_id, ()):
            lines.extend(_layer(trace, titles[trace.layer], funds[trace.layer]))
        res = by_id[claim.claim_id]
        lines.append(f"  out of pocket: {format_money(res.out_of_pocket)} = total {format_money(claim.total_cost)}"
                     f" − payments {format_money(sum(res.payments))}")
    for py in result.persons:
        lines.append("")
        paid = ", ".join(f"{lid} {format_money(v)}" for lid, v in zip(result.layers, py.payments, strict=True) if v)
        lines.append(f"Year {py.year}: total cost {format_money(py.total_cost)}; paid: {paid or 'nothing'}; "
                     f"out of pocket {format_money(py.out_of_pocket)}")
        if py.alerts:
            lines.append(f"  alerts: {', '.join(py.alerts)}")
        for sid, amount in py.subsidies:
            lines.append(f"  premium subsidy {sid}: {format_money(amount)}")
    return "\n".join(lines) + "\n"


def _claim_header(graph: Graph, claim: Claim, options: Options) -> list[str]:
    epoch = graph.epoch_at(options.as_of or claim.date)
    out_of_list = claim.total_cost - claim.eligible_cost
    flags = [f for f in ("referred", "emergency", "tcm_institution", "pure_tcm", "grassroots") if getattr(claim, f)]
    if not claim.in_province:
        flags.append("outside the province")
    elif not claim.in_pooling_area:
        flags.append("outside the pooling area")
    if not claim.direct_settlement:
        flags.append("not direct-settled")
    if claim.designation != "none":
        flags.append(claim.designation)
    if claim.diseases:
        flags.append("diseases " + ", ".join(sorted(claim.diseases)))
    docs = " + ".join(epoch.documents) or "no document in force"
    return [f"Claim {claim.claim_id} {claim.date} {claim.kind} level {claim.hospital_level}"
            f"{' (' + '; '.join(flags) + ')' if flags else ''}: total {format_money(claim.total_cost)}, "
            f"eligible {format_money(claim.eligible_cost)}, out-of-list {format_money(out_of_list)}",
            f"  rules in force: {docs}"]


def _cites(cites: Iterable[Cite]) -> str:
    seen = dict.fromkeys(f"{c.text()} @ {c.location()}" for c in cites)
    return "; ".join(seen) if seen else "no citation"


def _pct(ppm: int) -> str:
    return f"{(Decimal(ppm) / 10_000).normalize():f}%"


def _layer(t: LayerTrace, title: str, fund: str) -> list[str]:
    head = f"  {t.layer} {title} [{fund}]"
    if t.status != "paid":
        note = {"not in force": "not in force on this date", "out of scope": "claim outside its scope",
                "not covered": "no schedule applies (e.g. the person holds none of its identities)"}[t.status]
        cite = f" — scope: {_cites(t.scope_cites)}" if t.scope_cites else ""
        return [f"{head}: 0.00 ({note}){cite}"]
    out = [f"{head}: paid {format_money(t.payment)}"]
    if t.identity or t.alternatives:
        out.append(f"      identity schedule: {t.identity or 'general'}" + _alternatives(t))
    if t.scope_cites:
        out.append(f"      in scope ({_cites(t.scope_cites)})")
    base_note = _cites(t.base_cites) if t.base_cites else "the eligible self-pay the layers before it left"
    out.append(f"      base {format_money(t.base)}  ({base_note})")
    if t.deductible_rule:
        name, cites = t.deductible_rule
        out.append(f"      deductible {format_money(t.deductible)} charged ({t.period}; rule {name}: {_cites(cites)})")
    out.append(f"      payable above the deductible {format_money(t.payable)}")
    out.extend(_pricing(t))
    if t.cap_year is not None and t.cap_rule:
        out.append(f"      cap per year {format_money(t.cap_year)}: {format_money(t.cap_left or 0)} left before this "
                   f"claim ({_cites(t.cap_rule[1])})")
    if t.pool:
        out.append(f"      shared cap {t.pool[0]}: {format_money(t.pool[1])} left before this claim")
    if t.rounded != t.payment:
        out.append(f"      rounded increment {format_money(t.rounded)} limited by caps to {format_money(t.payment)}")
    return out


def _alternatives(t: LayerTrace) -> str:
    if len(t.alternatives) < 2:
        return ""
    parts = [f"{ident or 'general'} {format_money(total)}" for ident, total in t.alternatives]
    return f" (就高不重复: person-year totals {', '.join(parts)}; the largest wins)"


def _pricing(t: LayerTrace) -> list[str]:
    name, cites = t.pricing_rule or ("default", ())
    out = []
    if t.segments:
        out.append(f"      {t.pricing} (rule {name}: {_cites(cites)}):")
        for s in t.segments:
            out.append(f"        {format_money(s.low)}–{format_money(s.high)} at {_pct(s.rate)} = "
                       f"{_exact(s.amount)}")
    else:
        out.append(f"      {t.pricing} of {format_money(t.payable)} (rule {name}: {_cites(cites)})")
    if t.bonus:
        out.append(f"      bonus on part of the claim: {_exact(t.bonus)}")
    out.append(f"      exact payment {_exact(t.exact)}; person-year cumulative rounded half-up → this claim "
               f"{format_money(t.rounded)}")
    return out


def _exact(amount: Fraction) -> str:
    if amount.denominator == 1:
        return format_money(int(amount))
    yuan = (Decimal(amount.numerator) / Decimal(amount.denominator) / 100).quantize(Decimal("0.000001"))
    return f"{format_money(round_half_up(amount))} (exactly {yuan} yuan)"
