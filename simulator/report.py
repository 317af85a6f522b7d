"""Report: a simulation document (simulator.job) -> one self-contained HTML page with inline SVG charts."""

from __future__ import annotations

import functools
import importlib.metadata
import io
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import attrs
import jinja2
import matplotlib
from markupsafe import Markup, escape
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

from policy_lang.vocabulary import FUNDS, IDENTITIES, SCHEMES

matplotlib.use("Agg")  # never a GUI backend; charts are only ever written to SVG

Doc = dict[str, Any]
Row = dict[str, Any]

POLICY_COLOR, BASELINE_COLOR = "#1f5fa8", "#a9a9a9"
WIN_COLOR, LOSE_COLOR, TARGET_COLOR = "#2e7d32", "#c62828", "#c62828"
GROUP_NAMES: Mapping[str, str] = {**IDENTITIES, "none": "无特殊身份"}
WAN = Decimal(10_000)


def render_report(doc: Doc) -> str:
    """The simulation document as one HTML page: no scripts, no network, every value autoescaped."""
    return _environment().get_template("report.html.j2").render(**context(doc))


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("simulator", "templates"),
                              autoescape=jinja2.select_autoescape(("html", "html.j2"), default=True),
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True)


def context(doc: Doc) -> dict[str, Any]:
    """Plain records (strings, numbers, lists, dicts and the generated SVG) for the template."""
    base = doc.get("baseline")
    meta = doc["meta"]
    return {
        "has_baseline": base is not None,
        "replicated": bool(doc.get("replicates")),
        "policy": _policy_meta(meta["policy"]),
        "baseline": _policy_meta(meta["baseline"]) if meta.get("baseline") else None,
        "year": doc["population"]["year"],
        "population": _population(doc["population"], doc.get("replicates")),
        "headline": _headline(doc),
        "figures": charts(doc),
        "layers": _layer_rows(doc),
        "funds": _amount_rows(doc, "funds", _fund_name),
        "totals": _total_rows(doc),
        "oop": _oop_rows(doc),
        "histogram": _histogram_rows(doc),
        "catastrophic": _catastrophic_rows(doc),
        "alerts": _alert_rows(doc),
        "subsidies": _subsidy_rows(doc),
        "payout": _payout_rows(doc),
        "groups": _group_rows(doc),
        "movers": _mover_rows(doc),
        "biggest": _biggest_rows(doc),
        "intervals": _interval_rows(doc.get("replicates")),
        "assumptions": [dict(a) for a in doc.get("assumptions", [])],
        "reproduce": _reproduce(doc["reproduce"]),
    }


# ---- formatting -----------------------------------------------------------------------------------------
def yuan(amount: str | None) -> str:
    """'1234567.8' -> '1,234,567.80'; None -> ''."""
    return "" if amount is None else f"{Decimal(amount):,.2f}"


def signed(amount: str | None) -> str:
    """A change with its sign: '+1,234.50', '-0.05', '0.00'."""
    if amount is None:
        return ""
    d = Decimal(amount)
    return f"{d:+,.2f}" if d else "0.00"


def count(n: int | None) -> str:
    return "" if n is None else f"{n:,}"


def signed_count(n: int | None) -> str:
    return "" if n is None else (f"{n:+,}" if n else "0")


def percent(ratio: str | None) -> str:
    """'0.6612' -> '66.12%'."""
    return "" if ratio is None else f"{Decimal(ratio) * 100:.2f}%"


def sign_class(value: str | int | None) -> str:
    if value is None or value == "":
        return ""
    d = Decimal(value)
    return "pos" if d > 0 else "neg" if d < 0 else ""


def _wan(amount: str) -> float:
    return float(Decimal(amount) / WAN)


def _sub(a: str | None, b: str | None) -> str:
    return str(Decimal(a or "0") - Decimal(b or "0"))


def _at(d: Mapping[str, Any] | None, *path: str, default: Any = None) -> Any:
    """d[path…], or None when there is no d (no baseline); `default` where d lacks a key."""
    if d is None:
        return None
    v: Any = d
    for key in path:
        v = v.get(key, default) if isinstance(v, Mapping) else default
    return v


def _fund_name(fund: str) -> str:
    return FUNDS.get(fund, "")


def _group_name(group: str) -> str:
    return GROUP_NAMES.get(group, "")


# ---- header, population, headline -----------------------------------------------------------------------
def _policy_meta(meta: Doc) -> Row:
    docs = [{"policy": d["policy"], "document": d.get("document") or "—", "title": d.get("title") or "",
             "dated": d.get("dated") or "—", "period": _period(d.get("effective"), d.get("until"))}
            for d in meta.get("documents", [])]
    return {"id": meta["id"], "title": meta.get("title") or meta["id"], "path": meta.get("path") or "",
            "document": meta.get("document") or "—", "period": _period(meta.get("effective"), meta.get("until")),
            "chain": " → ".join(meta.get("chain", [])), "documents": docs}


def _period(start: str | None, end: str | None) -> str:
    return f"{start or '—'} – {end or 'open-ended'}"


def _population(pop: Doc, replicates: Doc | None) -> list[Row]:
    rows: list[tuple[str, str]] = [("source", pop["source"])]
    if pop["source"] == "synthetic":
        rows += [("profile", pop["profile"]), ("size (persons asked for)", count(pop["size"])),
                 ("seed", str(pop["seed"]))]
    else:
        rows.append(("directory", str(pop.get("directory", ""))))
    if replicates:
        rows.append(("replicate seeds", ", ".join(str(s) for s in replicates.get("seeds", []))))
    rows += [("year simulated", str(pop["year"])), ("persons", count(pop["persons"])),
             ("claimants (persons with a claim in the year)", count(pop["claimants"])),
             ("claims", count(pop["claims"]))]
    return [{"label": label, "value": value} for label, value in rows]


def _headline(doc: Doc) -> list[Row]:
    pol, base = doc["policy"], doc.get("baseline")
    rows = [_compare_row("paid by all funds", "", pol["paid_total"], _at(base, "paid_total"))]
    rows += [_compare_row(f"paid by {fund}", _fund_name(fund), pol["funds"].get(fund, "0.00"),
                          _at(base, "funds", fund, default="0.00"))
             for fund in _keys(pol["funds"], _at(base, "funds"))]
    rows.append(_compare_row("out of pocket (all claimants)", "个人负担", pol["out_of_pocket_total"],
                             _at(base, "out_of_pocket_total")))
    rows.append(_compare_row("mean out of pocket per claimant", "人均个人负担", pol["out_of_pocket"]["mean"],
                             _at(base, "out_of_pocket", "mean")))
    return rows


def _compare_row(label: str, name: str, new: str, old: str | None) -> Row:
    change = None if old is None else _sub(new, old)
    return {"label": label, "name": name, "policy": yuan(new), "baseline": yuan(old), "change": signed(change),
            "cls": sign_class(change)}


def _keys(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[str]:
    """The policy's keys in its order, then the baseline's others."""
    return list(dict.fromkeys([*new, *(old or {})]))


# ---- tables ---------------------------------------------------------------------------------------------
def _layer_info(doc: Doc) -> dict[str, tuple[str, str]]:
    metas = [m for m in (doc["meta"].get("baseline"), doc["meta"]["policy"]) if m]
    return {layer["id"]: (layer.get("title") or "", layer.get("fund") or "") for m in metas for layer in m["layers"]}


def _layer_rows(doc: Doc) -> list[Row]:
    info = _layer_info(doc)
    rows = _amount_rows(doc, "payments", lambda layer: info.get(layer, ("", ""))[0])
    for row in rows:
        row["fund"] = info.get(row["key"], ("", ""))[1]
    return rows


def _amount_rows(doc: Doc, field: str, name: Callable[[str], str]) -> list[Row]:
    new, base = doc["policy"][field], doc.get("baseline")
    old = base[field] if base else None
    return [{"key": key, **_compare_row(key, name(key), new.get(key, "0.00"), _at(old, key, default="0.00"))}
            for key in _keys(new, old)]


def _total_rows(doc: Doc) -> list[Row]:
    pol, base = doc["policy"], doc.get("baseline")
    return [_compare_row("total paid", "合计", pol["paid_total"], _at(base, "paid_total")),
            _compare_row("out of pocket", "个人负担", pol["out_of_pocket_total"], _at(base, "out_of_pocket_total")),
            _compare_row("total cost", "总费用", pol["total_cost"], _at(base, "total_cost"))]


def _oop_rows(doc: Doc) -> list[Row]:
    new, base = doc["policy"]["out_of_pocket"], doc.get("baseline")
    old = base["out_of_pocket"] if base else None
    labels = {"mean": "mean", "p50": "median (p50)", "p90": "p90", "p99": "p99"}
    return [_compare_row(label, "", new[k], _at(old, k)) for k, label in labels.items()]


def _histogram_rows(doc: Doc) -> list[Row]:
    new = doc["policy"]["out_of_pocket"].get("histogram", [])
    base = doc.get("baseline")
    old = base["out_of_pocket"].get("histogram") if base else None
    total_new = sum(b["claimants"] for b in new) or 1
    rows = []
    for i, b in enumerate(new):
        before = old[i]["claimants"] if old else None
        rows.append({"bin": _bin_label(b), "policy": count(b["claimants"]),
                     "share": f"{Decimal(100 * b['claimants']) / total_new:.2f}%", "baseline": count(before),
                     "change": signed_count(None if before is None else b["claimants"] - before),
                     "cls": sign_class(None if before is None else b["claimants"] - before)})
    return rows


def _bin_label(b: Doc) -> str:
    low = f"{Decimal(b['low']):,.0f}"
    return f"{low} and more" if b["high"] is None else f"{low} – {Decimal(b['high']):,.0f}"


def _catastrophic_rows(doc: Doc) -> list[Row]:
    base = doc.get("baseline")
    old = {c["threshold"]: c["persons"] for c in base["catastrophic"]} if base else None
    return [_count_row(f"≥ {yuan(c['threshold'])}", c["persons"], _at(old, c["threshold"], default=0))
            for c in doc["policy"]["catastrophic"]]


def _count_row(label: str, new: int, old: int | None) -> Row:
    change = None if old is None else new - old
    return {"label": label, "policy": count(new), "baseline": count(old), "change": signed_count(change),
            "cls": sign_class(change)}


def _alert_rows(doc: Doc) -> list[Row]:
    new, base = doc["policy"]["alerts"], doc.get("baseline")
    old = base["alerts"] if base else None
    return [_count_row(key, new.get(key, 0), _at(old, key, default=0)) for key in _keys(new, old)]


def _subsidy_rows(doc: Doc) -> list[Row]:
    new, base = doc["policy"]["premium_subsidies"], doc.get("baseline")
    old = base["premium_subsidies"] if base else None
    empty = {"persons": 0, "amount": "0.00"}
    rows = []
    for key in _keys(new, old):
        n, o = new.get(key, empty), (old.get(key, empty) if old is not None else None)
        rows.append({"key": key, "persons": _count_row("", n["persons"], _at(o, "persons")),
                     "amount": _compare_row("", "", n["amount"], _at(o, "amount"))})
    return rows


def _payout_rows(doc: Doc) -> list[Row]:
    base = doc.get("baseline")
    old = {r["target"]: r for r in base["payout_ratios"]} if base else {}
    return [{"target": r["target"], "title": r["title"], "schemes": _scheme_names(r["schemes"]),
             "layers": ", ".join(r["layers"]), "ratio": percent(r["ratio"]),
             "baseline": percent(old[r["target"]]["ratio"]) if r["target"] in old else "",
             "minimum": percent(r["minimum"]), "by": r["by"], "met": "met" if r["met"] else "not met",
             "gap": f"{(Decimal(r['ratio']) - Decimal(r['minimum'])) * 100:+.2f} points",
             "cls": "met" if r["met"] else "unmet"}
            for r in doc["policy"]["payout_ratios"]]


def _scheme_names(schemes: Iterable[str]) -> str:
    return ", ".join(f"{s} {SCHEMES.get(s, '')}".strip() for s in schemes)


def _group_rows(doc: Doc) -> list[Row]:
    base = doc.get("baseline")
    old = {(g["group"], g["scheme"]): g for g in base["groups"]} if base else None
    return [_group_row(g, old.get((g["group"], g["scheme"])) if old is not None else None)
            for g in doc["policy"]["groups"]]


def _group_row(g: Doc, old: Doc | None) -> Row:
    paid = _paid(g)
    per_claimant = Decimal(g["out_of_pocket"]) / g["claimants"] if g["claimants"] else Decimal(0)
    return {"group": g["group"], "name": _group_name(g["group"]), "scheme": g["scheme"],
            "scheme_name": SCHEMES.get(g["scheme"], ""), "persons": count(g["persons"]),
            "claimants": count(g["claimants"]), "cost": yuan(g["total_cost"]),
            "oop_per_claimant": yuan(str(per_claimant.quantize(Decimal("0.01")))),
            "paid": _compare_row("", "", paid, _paid(old) if old else None),
            "oop": _compare_row("", "", g["out_of_pocket"], old["out_of_pocket"] if old else None)}


def _paid(group: Doc) -> str:
    return str(sum((Decimal(v) for v in group["payments"].values()), Decimal(0)))


def _mover_rows(doc: Doc) -> list[Row]:
    wl = doc.get("winners_losers")
    if not wl:
        return []
    items = [*wl["by_group"].items(), ("total", wl["total"])]
    return [{"group": group, "name": _group_name(group) if group != "total" else "合计",
             "winners": count(m["winners"]), "gained": yuan(m["gained"]), "losers": count(m["losers"]),
             "lost": yuan(m["lost"]), "net": signed(_sub(m["lost"], m["gained"])),
             "cls": sign_class(_sub(m["lost"], m["gained"])), "total": group == "total"}
            for group, m in items]


def _biggest_rows(doc: Doc) -> list[Row]:
    wl = doc.get("winners_losers") or {}
    return [{"person": c["person_id"], "group": c["group"], "name": _group_name(c["group"]),
             "old": yuan(c["old_out_of_pocket"]), "new": yuan(c["new_out_of_pocket"]),
             "change": signed(c["change"]), "cls": sign_class(c["change"])}
            for c in wl.get("biggest_changes", [])]


def _interval_rows(replicates: Doc | None) -> list[Row]:
    if not replicates:
        return []
    rows = []
    for key, iv in replicates["intervals_95"].items():
        is_count = key.startswith("winners_losers.")
        fmt = _persons if is_count else yuan
        rows.append({"key": key, "unit": "persons" if is_count else "yuan", "mean": fmt(iv["mean"]),
                     "low": fmt(iv["low"]), "high": fmt(iv["high"]),
                     "half": fmt(str((Decimal(iv["high"]) - Decimal(iv["low"])) / 2)),
                     "replicates": iv["replicates"]})
    return rows


def _persons(mean: str) -> str:
    return f"{Decimal(mean):,.1f}"


def _reproduce(command: str) -> Row:
    try:
        version = importlib.metadata.version("polc")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"command": command, "json": f"{command} --format json --out result.json",
            "report": f"{command} --report report.html", "version": version}


# ---- charts ---------------------------------------------------------------------------------------------
@attrs.frozen
class Chart:
    """One numbered figure: its SVG, or why it is absent."""

    number: int
    anchor: str
    title: str
    caption: str
    svg: Markup | None
    absent: str = ""


def charts(doc: Doc) -> dict[str, Chart]:
    """The four figures, always numbered 1–4 (a figure that does not apply says why)."""
    # Text stays text (the browser draws it with its own fonts, CJK included); ids and hashes are fixed so
    # the same document always gives the same bytes.
    with matplotlib.rc_context({
        "svg.hashsalt": "polc-report", "svg.fonttype": "none", "font.family": "sans-serif", "font.size": 9,
        "axes.spines.top": False, "axes.spines.right": False, "axes.titlesize": 10, "legend.fontsize": 8,
        "legend.frameon": False,
    }):
        return {"fund": _fund_chart(doc), "oop": _oop_chart(doc), "movers": _movers_chart(doc),
                "payout": _payout_chart(doc)}


def _fund_chart(doc: Doc) -> Chart:
    return Chart(1, "fig1", "各层各基金支付 Fund impact by layer and fund",
                 "Payments in 万元 (10,000 yuan) a year; baseline grey, policy blue.",
                 _svg(_fund_figure(doc), "f1", "Figure 1: fund impact by layer and fund"))


def _oop_chart(doc: Doc) -> Chart:
    return Chart(2, "fig2", "个人负担分布 Out-of-pocket distribution per claimant",
                 "Claimants by out-of-pocket yuan a year, log-spaced bins.",
                 _svg(_oop_figure(doc), "f2", "Figure 2: out-of-pocket distribution"))


def _movers_chart(doc: Doc) -> Chart:
    title = "受益与受损人群 Winners and losers by group"
    if not doc.get("winners_losers"):
        return Chart(3, "fig3", title, "", None, "No baseline: winners and losers need a policy to compare with.")
    return Chart(3, "fig3", title, "Persons who pay less (winners, right) or more (losers, left) out of pocket.",
                 _svg(_movers_figure(doc["winners_losers"]), "f3", "Figure 3: winners and losers by group"))


def _payout_chart(doc: Doc) -> Chart:
    title = "住院报销比例与2025年目标 Payout ratio vs the 2025 target"
    if not doc["policy"]["payout_ratios"]:
        return Chart(4, "fig4", title, "", None, "No population target applies to this population.")
    base = doc.get("baseline")
    figure = _payout_figure(doc["policy"]["payout_ratios"], _at(base, "payout_ratios"))
    return Chart(4, "fig4", title, "Policy-range inpatient payout ratio by scheme; red line: the target.",
                 _svg(figure, "f4", "Figure 4: payout ratio vs target"))


def _svg(fig: Figure, prefix: str, label: str) -> Markup:
    """The figure as an inline <svg> element (we drew it ourselves: the only markup marked safe)."""
    buf = io.StringIO()
    with warnings.catch_warnings():
        # Labels written in CJK: matplotlib's DejaVu lacks the glyphs, the browser's fonts have them.
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return Markup(inline_svg(buf.getvalue(), prefix, label))


def inline_svg(text: str, prefix: str, label: str) -> str:
    """Matplotlib's SVG file -> an element for an HTML page: no prolog, no metadata, no namespace URLs
    (the HTML parser knows <svg>), and every id and reference to one prefixed so figures never clash."""
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.DOTALL)
    text = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", text)
    text = text.replace("xlink:href=", "href=")
    text = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", text)
    text = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', text)
    return text.replace("<svg ", f'<svg role="img" aria-label="{escape(label)}" ', 1).strip()


def _sides(new: Mapping[str, str], old: Mapping[str, str] | None) -> tuple[list[str], list[float], list[float] | None]:
    keys = _keys(new, old)
    return (keys, [_wan(new.get(k, "0")) for k in keys],
            None if old is None else [_wan(old.get(k, "0")) for k in keys])


def _fund_figure(doc: Doc) -> Figure:
    pol, base = doc["policy"], doc.get("baseline")
    layers = _sides(pol["payments"], _at(base, "payments"))
    funds = _sides(pol["funds"], _at(base, "funds"))
    height = 1.2 + 0.32 * max(len(layers[0]), len(funds[0])) * (2 if base else 1)
    fig = Figure(layout="constrained", figsize=(10, height))
    left, right = fig.subplots(1, 2)
    _paired_bars(left, *layers, "by layer")
    _paired_bars(right, *funds, "by fund")
    return fig


def _paired_bars(ax: Axes, keys: Sequence[str], new: Sequence[float], old: Sequence[float] | None,
                 title: str) -> None:
    """Horizontal bars per key: the baseline's above the policy's, values written at the bar ends."""
    ys = list(range(len(keys)))
    h = 0.4 if old is not None else 0.6
    if old is not None:
        bars = ax.barh([y - h / 2 for y in ys], old, h, color=BASELINE_COLOR, label="baseline")
        ax.bar_label(bars, fmt="{:,.1f}", padding=2, fontsize=7)
    bars = ax.barh([y + h / 2 if old is not None else y for y in ys], new, h, color=POLICY_COLOR, label="policy")
    ax.bar_label(bars, fmt="{:,.1f}", padding=2, fontsize=7)
    ax.set_yticks(ys, list(keys))
    ax.invert_yaxis()
    ax.set_title(title)
    ax.set_xlabel("10,000 yuan")
    ax.margins(x=0.18)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.legend(loc="lower right")


def _bin_name(b: Doc) -> str:
    def short(v: str) -> str:
        n = int(Decimal(v))
        return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)

    return f"{short(b['low'])}+" if b["high"] is None else f"{short(b['low'])}-{short(b['high'])}"


def _oop_figure(doc: Doc) -> Figure:
    new = doc["policy"]["out_of_pocket"].get("histogram", [])
    base = doc.get("baseline")
    old = base["out_of_pocket"].get("histogram") if base else None
    fig = Figure(layout="constrained", figsize=(10, 3.4))
    axes = fig.subplots(1, 2, width_ratios=(3, 2)) if old else [fig.subplots()]
    names = [_bin_name(b) for b in new]
    xs = list(range(len(new)))
    _oop_bars(axes[0], xs, names, [b["claimants"] for b in new], [b["claimants"] for b in old] if old else None)
    if old:
        _oop_change(axes[1], xs, names, [n["claimants"] - o["claimants"] for n, o in zip(new, old, strict=True)])
    return fig


def _oop_bars(ax: Axes, xs: Sequence[int], names: Sequence[str], new: Sequence[int],
              old: Sequence[int] | None) -> None:
    w = 0.4 if old is not None else 0.7
    if old is not None:
        ax.bar([x - w / 2 for x in xs], list(old), w, color=BASELINE_COLOR, label="baseline")
    ax.bar([x + w / 2 if old is not None else x for x in xs], list(new), w, color=POLICY_COLOR, label="policy")
    _bin_axis(ax, xs, names, "claimants")
    ax.set_title("claimants by out-of-pocket yuan a year")
    ax.legend()


def _bin_axis(ax: Axes, xs: Sequence[int], names: Sequence[str], ylabel: str) -> None:
    ax.set_xticks(list(xs), list(names), rotation=45, ha="right")
    ax.set_xlabel("out of pocket, yuan (log-spaced bins)")
    ax.set_ylabel(ylabel)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))


def _oop_change(ax: Axes, xs: Sequence[int], names: Sequence[str], delta: Sequence[int]) -> None:
    bars = ax.bar(list(xs), list(delta), 0.7, color=POLICY_COLOR)
    ax.bar_label(bars, labels=[f"{d:+,}" if d else "" for d in delta], fontsize=7, padding=1)
    ax.axhline(0, color="#444", linewidth=0.8)
    _bin_axis(ax, xs, names, "claimants, policy - baseline")
    ax.set_title("change in claimants per bin")
    ax.margins(y=0.15)


def _movers_figure(wl: Doc) -> Figure:
    groups = list(wl["by_group"])
    rows = [wl["by_group"][g] for g in groups]
    fig = Figure(layout="constrained", figsize=(10, 1.0 + 0.3 * len(groups)))
    counts, amounts = fig.subplots(1, 2, sharey=True)
    _diverging(counts, groups, [r["winners"] for r in rows], [r["losers"] for r in rows], "persons", _magnitude)
    _diverging(amounts, groups, [float(Decimal(r["gained"])) for r in rows],
               [float(Decimal(r["lost"])) for r in rows], "yuan a year", _magnitude)
    counts.invert_yaxis()  # shared: once for both
    counts.set_title("winners (pay less) and losers (pay more)")
    amounts.set_title("yuan saved by winners and added for losers")
    return fig


def _magnitude(v: float) -> str:
    return f"{abs(v):,.0f}"


def _diverging(ax: Axes, groups: Sequence[str], wins: Sequence[float], losses: Sequence[float], xlabel: str,
               fmt: Callable[[float], str]) -> None:
    """Winners to the right of zero, losers to the left, one row per group."""
    ys = list(range(len(groups)))
    won = ax.barh(ys, list(wins), 0.6, color=WIN_COLOR, label="winners")
    lost = ax.barh(ys, [-v for v in losses], 0.6, color=LOSE_COLOR, label="losers")
    ax.bar_label(won, labels=[fmt(v) if v else "" for v in wins], padding=2, fontsize=7)
    ax.bar_label(lost, labels=[fmt(v) if v else "" for v in losses], padding=2, fontsize=7)
    ax.axvline(0, color="#444", linewidth=0.8)
    ax.set_yticks(ys, list(groups))
    ax.set_xlabel(xlabel)
    ax.margins(x=0.2)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4))  # room for labels of seven digits and more
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v)))
    ax.legend(loc="lower right")


def _payout_figure(rows: Sequence[Doc], old_rows: Sequence[Doc] | None) -> Figure:
    old = {r["target"]: r for r in old_rows or []}
    labels = [",".join(r["schemes"]) or r["target"] for r in rows]
    fig = Figure(layout="constrained", figsize=(10, 1.2 + 0.6 * len(rows)))
    ax = fig.subplots()
    ys = list(range(len(rows)))
    h = 0.35 if old else 0.6
    before = [(y, float(Decimal(old[r["target"]]["ratio"]))) for y, r in zip(ys, rows, strict=True)
              if r["target"] in old]
    if before:
        bars = ax.barh([y - h / 2 for y, _ in before], [v for _, v in before], h, color=BASELINE_COLOR,
                       label="baseline")
        ax.bar_label(bars, labels=[f"{v:.2%}" for _, v in before], padding=2, fontsize=7)
    vals = [float(Decimal(r["ratio"])) for r in rows]
    bars = ax.barh([y + h / 2 if old else y for y in ys], vals, h, color=POLICY_COLOR, label="policy")
    ax.bar_label(bars, labels=[f"{v:.2%}" for v in vals], padding=2, fontsize=7)
    ax.vlines([float(Decimal(r["minimum"])) for r in rows], [y - 0.45 for y in ys], [y + 0.45 for y in ys],
              color=TARGET_COLOR, linewidth=2, label="target")
    ax.set_yticks(ys, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("payments of the target's layers / policy-range inpatient cost")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
