"""Random .pol sources and populations for differential tests of interp against vector."""

from __future__ import annotations

import datetime
import random
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import attrs

from policy_lang import interp
from policy_lang.data import Claim, Dataset, Grant, Person
from policy_lang.diagnostics import PolicyError
from policy_lang.pipeline import Built, build

T = TypeVar("T")

KINDS = ("inpatient", "outpatient", "chronic_outpatient", "high_value_drug", "maternity")
IDENTITIES = ("tekun", "orphan", "dibao", "near_dibao", "relapse_poor", "illness_poor", "registered_poor")
DISEASES = ("uremia", "hemophilia", "severe_mental", "hypertension", "diabetes", "major_disease")
FUNDS = ("basic_fund", "critical_illness_fund", "assistance_fund", "large_supplement_fund", "provincial_finance")
CHANGE_DAYS = ("2019-04-01", "2019-07-01", "2019-10-01", "2020-03-01")
# Condition atoms over a claim and its person (scopes and rules); person-only ones for thresholds.
CLAIM_ATOMS = (
    "level >= 2", "level = 3", "level < 3", "grassroots", "tcm_institution", "referred", "not referred",
    "in_province", "emergency", "pure_tcm", "direct_settlement", "designation = county_poverty",
    "designation in (county_poverty, city_poverty)", "diseases has uremia", "diseases has any (hypertension, diabetes)",
    "certified has diabetes", "eligible_cost >= 3000", "bed_days > 3", "tcm_cost > 0", "certified", "diseases",
    "ward = icu", "ward in (icu, normal)", "visits >= 3", "night", "extra_fee > 100",
)
PERSON_ATOMS = (
    "retired", "age >= 60", "sex = F", "region = liaozhong", "resettled", "chronic has diabetes",
    "chronic has all (hypertension, diabetes)", "identities has dibao", "identities has any (tekun, near_dibao)",
    "scheme = employee", "scheme = resident", "chronic", "income < 5000", "village = east", "disabled",
)
COLUMNS = ("column ward: claim text", "column visits: claim int", "column night: claim bool",
           "column extra_fee: claim money", "column income: person money", "column village: person text",
           "column disabled: person bool")


class Chooser(Protocol):
    """Where random choices come from: `random.Random` (bench) or Hypothesis draws (tests, shrinkable)."""

    def integer(self, low: int, high: int) -> int: ...


def pick(ch: Chooser, items: Sequence[T]) -> T:
    return items[ch.integer(0, len(items) - 1)]


def chance(ch: Chooser, percent: int) -> bool:
    return ch.integer(0, 99) < percent


def some(ch: Chooser, items: Sequence[T], low: int, high: int) -> list[T]:
    pool, out = list(items), []
    for _ in range(ch.integer(low, min(high, len(items)))):
        out.append(pool.pop(ch.integer(0, len(pool) - 1)))
    return out


@attrs.frozen
class RandomChooser:
    rng: random.Random

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)


@attrs.frozen
class DrawChooser:
    draw: Callable[[Any], Any]

    def integer(self, low: int, high: int) -> int:
        from hypothesis import strategies as st

        return int(self.draw(st.integers(low, high)))


@attrs.frozen
class Case:
    files: dict[str, str]
    main: str
    persons: tuple[Person, ...]
    claims: tuple[Claim, ...]
    options: interp.Options

    def source(self) -> str:
        return "\n".join(f"# ---- {name}\n{text}" for name, text in self.files.items())


# ---- policies -------------------------------------------------------------------------------------------------
def _yuan(ch: Chooser, low: int, high: int) -> str:
    return str(ch.integer(low, high))


def _rate(ch: Chooser) -> str:
    return pick(ch, ("0%", "45%", "50%", "60%", "62.5%", "70%", "75%", "85%", "90%", "99.9999%", "100%"))


def _cond(ch: Chooser, atoms: Sequence[str] = CLAIM_ATOMS + PERSON_ATOMS) -> str:
    first = pick(ch, atoms)
    if chance(ch, 25):
        return f"{first} {pick(ch, ('and', 'or'))} {pick(ch, atoms)}"
    return f"not ({first})" if chance(ch, 10) else first


def _kind_scope(ch: Chooser, kinds: Sequence[str]) -> str:
    scope = f"kind = {kinds[0]}" if len(kinds) == 1 else f"kind in ({', '.join(kinds)})"
    return f"{scope} and {pick(ch, CLAIM_ATOMS + PERSON_ATOMS)}" if chance(ch, 25) else scope


def _deductible(ch: Chooser) -> str:
    value = pick(ch, (_yuan(ch, 0, 2000), f"by level {_yuan(ch, 0, 300)} / {_yuan(ch, 0, 800)} / "
                                          f"{_yuan(ch, 0, 1500)}", f"{_yuan(ch, 1, 99)}.{ch.integer(1, 99):02d}"))
    return f"deductible {value} {pick(ch, ('per claim', 'per admission', 'per year'))}"


def _tiers(ch: Chooser) -> str:
    bounds = sorted({ch.integer(1, 80) * 1000 for _ in range(ch.integer(1, 3))})
    lows = [0, *bounds]
    parts = [f"{lo} to {hi}: {_rate(ch)}" for lo, hi in zip(lows, bounds, strict=False)]
    parts.append(f"above {lows[-1]}: {_rate(ch)}")
    axis = pick(ch, ("", "on base ", "on payable "))
    return f"tiers {axis}{{ {'; '.join(parts)} }}"


@attrs.define
class _LayerShape:
    index: int
    flat: bool = True  # every pricing rule of the layer is a flat rate
    has_rate: bool = True  # the layer default sets a rate
    identity_slots: set[str] = attrs.field(factory=set)
    used: dict[str, str | None] = attrs.field(factory=dict)  # slot -> last modifier name setting it


class _PolicyGen:
    """Builds one random policy (and perhaps an amendment of it) as source text."""

    def __init__(self, ch: Chooser):
        self.ch = ch
        self.n_layers = ch.integer(1, 5)
        self.kinds = [some(ch, KINDS, 1, 3) for _ in range(self.n_layers)]
        self.pool: tuple[int, int] | None = None
        if self.n_layers >= 2 and chance(ch, 25):
            first = ch.integer(0, self.n_layers - 2)
            self.pool = (first, first + 1)
            self.kinds[first], self.kinds[first + 1] = ["inpatient"], ["chronic_outpatient", "high_value_drug"]
        self.uses_unit_param = False
        self.rule_seq = 0
        self.late: set[int] = set()  # layers that start mid-year: nothing else may name them
        self.modifiers: dict[int, list[str]] = {}  # rule names per layer, for `remove rule`

    def files(self) -> dict[str, str]:
        base = self._base()
        if not chance(self.ch, 30):
            return {"main.pol": base}
        return {"base.pol": base, "main.pol": self._amendment()}

    def _base(self) -> str:
        ch = self.ch
        head = 'policy gen "generated" effective 2019-01-01'
        if chance(ch, 50):
            head += f" schemes {', '.join(some(ch, ('resident', 'employee', 'provincial_direct'), 1, 2))}"
        lines = [head + ' source "gen" {', "  param premium: money = 250",
                 f"  param premium: money = 380 effective {pick(ch, CHANGE_DAYS)}",
                 "  param bed_amount: money unspecified", *(f"  {c}" for c in COLUMNS)]
        for i in range(self.n_layers):
            lines.append(self._layer(i))
        if self.pool is not None:
            a, b = self.pool
            when = f" effective {pick(ch, CHANGE_DAYS)}" if chance(ch, 30) else ""
            lines.append(f"  shared cap pool {_yuan(ch, 500, 20000)} per year for l{a}, l{b}{when}")
        lines += self._alerts() + self._subsidy()
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _layer(self, i: int) -> str:
        ch, shape = self.ch, _LayerShape(i)
        header = f'  layer l{i} "L{i}" fund {pick(ch, FUNDS)}'
        if i > 0 and i not in (self.pool or ()) and chance(ch, 20):
            header += f" effective {pick(ch, CHANGE_DAYS)}"
            self.late.add(i)
        if i > 0 and i - 1 not in self.late and chance(ch, 10) and self.pool is None:
            header += f" exclusive of l{i - 1}"
        body = [f"    scope {_kind_scope(ch, self.kinds[i])}"]
        earlier = [f"l{j}" for j in range(i) if j not in self.late]
        if earlier and chance(ch, 40):
            after = some(ch, earlier, 1, len(earlier))
            plus = f" plus {pick(ch, ('material_over_limit', 'extra_fee'))}" if chance(ch, 30) else ""
            body.append(f"    base after {', '.join(after)}{plus}")
        elif chance(ch, 10):
            body.append(f"    base plus {pick(ch, ('material_over_limit', 'extra_fee', 'material_over_limit, extra_fee'))}")
        if chance(ch, 70):
            body.append(f"    {_deductible(ch)}")
        body += self._pricing(shape)
        body += self._caps(shape)
        body += self._identities(shape, allow_best=i not in (self.pool or ()))
        for _ in range(ch.integer(0, 3)):
            body += self._modifier(shape)
        return "\n".join([header + " {", *body, "  }"])

    def _pricing(self, shape: _LayerShape) -> list[str]:
        ch = self.ch
        roll = ch.integer(0, 99)
        if roll < 8:
            shape.has_rate = False
            return []
        if roll < 55:
            out = [f"    rate {_rate(ch)}"]
        elif roll < 70:
            out = [f"    rate by level {_rate(ch)} / {_rate(ch)} / {_rate(ch)}"]
        elif roll < 90:
            shape.flat = False
            out = [f"    {_tiers(ch)}"]
        else:
            shape.flat = False
            self.uses_unit_param = True
            column = pick(ch, ("bed_days", "bed_days", "visits"))
            out = [f"    unit_rate {pick(ch, ('bed_amount', '150', '80.5'))} per {column}"]
        if shape.flat and chance(ch, 30):
            out.append(f"    bonus {pick(ch, ('10%', '20%', '100%'))} on {pick(ch, ('tcm_cost', 'tcm_cost', 'extra_fee'))}")
        if chance(ch, 15):
            out.append(f"    rate {_rate(ch)} effective {pick(ch, CHANGE_DAYS)}")
            shape.flat = False if out[0].startswith("    tiers") or out[0].startswith("    unit") else shape.flat
        return out

    def _caps(self, shape: _LayerShape) -> list[str]:
        ch, out = self.ch, []
        if chance(ch, 50):
            out.append(f"    cap {_yuan(ch, 100, 30000)}{'.5' if chance(ch, 10) else ''} per year")
            if chance(ch, 35):  # a mid-year rise or fall
                out.append(f"    cap {_yuan(ch, 0, 30000)} per year effective {pick(ch, CHANGE_DAYS)}")
        if chance(ch, 20):
            out.append(f"    cap {_yuan(ch, 50, 20000)} per claim")
        return out

    def _identities(self, shape: _LayerShape, allow_best: bool) -> list[str]:
        ch = self.ch
        if not chance(ch, 40):
            return []
        precedence = pick(ch, ("best ", "order ", "")) if allow_best else pick(ch, ("order ", ""))
        out = [f"    by identity {precedence}{{"]
        pool = list(IDENTITIES)
        for _ in range(ch.integer(1, 3)):
            ids = [pool.pop(ch.integer(0, len(pool) - 1)) for _ in range(ch.integer(1, 2)) if pool]
            settings = []
            if chance(ch, 70):
                settings.append(f"rate {_rate(ch)}")
                shape.identity_slots.add("rate")
            if chance(ch, 50):
                settings.append(f"deductible {_yuan(ch, 0, 3000)} per {pick(ch, ('year', 'claim'))}")
                shape.identity_slots.add("deductible")
            if chance(ch, 25):
                settings.append(f"cap {_yuan(ch, 100, 20000)} per year")
                shape.identity_slots.add("cap_year")
            if not settings or chance(ch, 10):
                settings.append(self._nested_unit(shape))
            out.append(f"      {', '.join(ids)} {{ {'  '.join(settings)} }}")
        out.append("    }")
        if chance(ch, 40):
            raw = pick(ch, [i for i in IDENTITIES if i not in pool] or list(IDENTITIES))
            others = [i for i in pool if i != raw]
            if others:
                out.append(f"    treat {pick(ch, others)} as {raw}")
        return out

    def _nested_unit(self, shape: _LayerShape) -> str:
        self.uses_unit_param = True
        shape.flat = False
        shape.identity_slots.update({"rate", "deductible"})
        self.rule_seq += 1
        return (f"rule n{self.rule_seq} when kind = inpatient and bed_days > 2 {{ deductible 0 per claim  "
                f"unit_rate bed_amount per bed_days }}")

    def _modifier(self, shape: _LayerShape) -> list[str]:
        ch = self.ch
        slots = ("deductible", "deductible", "rate", "cap_year", "cap_claim", "bonus", "accumulate")
        slot = "rate" if not shape.has_rate and chance(ch, 50) else pick(ch, slots)
        setting = self._modifier_setting(shape, slot)
        if setting is None:
            return []
        cond = pick(ch, ("admission >= 2", "admission = 1", _cond(ch), _cond(ch)))
        self.rule_seq += 1
        name = f"m{self.rule_seq}"
        earlier = shape.used.get(slot, "-")
        if slot in shape.identity_slots or earlier != "-":
            over = f" over {earlier}" if earlier not in ("-", None) else ""
            head = f"exception {name} when {cond}{over}"
        else:
            head = f"rule {name} when {cond}"
        shape.used[slot] = name
        self.modifiers.setdefault(shape.index, []).append(name)
        return [f"    {head} {{ {setting} }}"]

    def _modifier_setting(self, shape: _LayerShape, slot: str) -> str | None:
        ch = self.ch
        if slot == "deductible":
            return pick(ch, ("deductible ×50%", "deductible -100", "deductible 0", f"deductible {_yuan(ch, 0, 900)}",
                             "deductible max(base_value - previous_deductible, 0)",
                             f"deductible {_yuan(ch, 0, 900)} per year", "deductible 300 per claim"))
        if slot == "rate":
            relative = shape.flat and shape.has_rate
            return pick(ch, ("rate +10%", "rate max(base_value + 10%, 50%)", "rate ×50%")) if relative \
                and chance(ch, 60) else f"rate {_rate(ch)}"
        if slot == "cap_year":
            return f"cap {_yuan(ch, 0, 20000)} per year" if chance(ch, 80) else "cap +2000 per year"
        if slot == "cap_claim":
            return f"cap {_yuan(ch, 10, 5000)} per claim"
        if slot == "bonus":
            return "bonus 10% on tcm_cost" if shape.flat else None
        return f"accumulate {pick(ch, ('designated', 'other'))}"

    def _alerts(self) -> list[str]:
        ch, out = self.ch, []
        for a in range(ch.integer(0, 2)):
            named = [f"l{j}" for j in range(self.n_layers) if j not in self.late]
            after = some(self.ch, named, 1, len(named))
            out.append(f'  alert a{a} "A{a}" {{')
            out.append(f"    measure burden after {', '.join(after)} where {_kind_scope(ch, some(ch, KINDS, 1, 3))}")
            for _ in range(ch.integer(1, 2)):
                amount = pick(ch, ("0", _yuan(ch, 1, 30000), "premium"))
                out.append(f"    when {pick(ch, ('true', _cond(ch, PERSON_ATOMS)))} {{ threshold {amount} }}")
            out.append("  }")
        return out

    def _subsidy(self) -> list[str]:
        ch = self.ch
        if not chance(ch, 50):
            return []
        out = [f'  subsidy s0 "S0" {pick(ch, ("best ", ""))}{{', "    amount premium"]
        if chance(ch, 30):
            out.append(f"    scope {_cond(ch, PERSON_ATOMS)}")
        for ids in some(ch, [("tekun", "orphan"), ("dibao",), ("near_dibao",), ("illness_poor",)], 1, 3):
            out.append(f"    {', '.join(ids)}: {pick(ch, ('100%', '60%', '33.3333%'))}")
        if chance(ch, 30):
            out.append("    treat relapse_poor as dibao")
        out.append("  }")
        return out

    def _amendment(self) -> str:
        """A second document amending the first from a mid-year date (maybe until a later one)."""
        ch = self.ch
        start = pick(ch, CHANGE_DAYS[:3])
        until = " until 2019-12-31" if chance(ch, 30) else ""
        lines = ['import "base.pol"', f'policy amend "amendment" amends gen effective {start}{until} source "gen2" {{']
        for i in some(ch, [j for j in range(self.n_layers) if j not in self.late], 1, 2):
            changes = [f"cap {_yuan(ch, 0, 30000)} per year", f"deductible {_yuan(ch, 0, 2000)} per year",
                       f"rate {_rate(ch)}", f"cap {_yuan(ch, 50, 5000)} per claim",
                       "by identity { dibao { rate 95% } }", f"scope {_kind_scope(ch, some(ch, KINDS, 1, 3))}"]
            if self.modifiers.get(i):
                changes.append(f"remove rule {pick(ch, self.modifiers[i])}")
            lines.append(f"  layer l{i} {{ {pick(ch, changes)} }}")
        lines.append("}")
        return "\n".join(lines) + "\n"


# ---- populations ---------------------------------------------------------------------------------------------
def _day(ch: Chooser, years: Sequence[int]) -> datetime.date:
    start = datetime.date(pick(ch, years), 1, 1)
    if chance(ch, 5):
        start = datetime.date(2018, 12, 1)
    return start + datetime.timedelta(days=ch.integer(0, 364))


def _persons(ch: Chooser, n: int, years: Sequence[int]) -> tuple[Person, ...]:
    out = []
    for i in range(n):
        grants = tuple(Grant(identity, _day(ch, years) if chance(ch, 40) else None)
                       for identity in some(ch, IDENTITIES, 0, 3) if chance(ch, 70))
        out.append(Person(
            person_id=f"p{i}", scheme=pick(ch, ("resident", "resident", "employee", "provincial_direct")),
            retired=chance(ch, 30), age=pick(ch, (None, 8, 45, 60, 75)), sex=pick(ch, (None, "F", "M")),
            identities=grants, region=pick(ch, (None, "liaozhong", "faku")),
            chronic=frozenset(some(ch, DISEASES, 0, 2)), resettled=chance(ch, 10),
            extra={"income": pick(ch, (None, 0, 300000, 1000000)), "village": pick(ch, (None, "east", "west")),
                   "disabled": pick(ch, (None, True, False))}))
    return tuple(out)


def _claims(ch: Chooser, persons: Sequence[Person], count: int, years: Sequence[int]) -> tuple[Claim, ...]:
    out = []
    for i in range(count):
        eligible = ch.integer(0, 100) * pick(ch, (1, 37, 1013, 10007)) + ch.integer(0, 99)
        if chance(ch, 2):  # near the loader's maximum (1e9 yuan): the int64 paths must stay exact
            eligible = 99_999_999_999 - ch.integer(0, 10**9)
        total = eligible + pick(ch, (0, 0, ch.integer(0, 50000)))
        in_province = chance(ch, 85)
        out.append(Claim(
            claim_id=pick(ch, ("c", "C", "x")) + str(ch.integer(0, 30)) + f"_{i}", person_id=pick(ch, persons).person_id,
            date=_day(ch, years), kind=pick(ch, KINDS), hospital_level=ch.integer(1, 3), total_cost=total,
            eligible_cost=eligible, grassroots=chance(ch, 30), tcm_institution=chance(ch, 20),
            designation=pick(ch, ("none", "none", "county_poverty", "city_poverty")),
            diseases=frozenset(some(ch, DISEASES, 0, 2)), referred=chance(ch, 25), in_province=in_province,
            in_pooling_area=in_province and chance(ch, 80), direct_settlement=chance(ch, 85),
            emergency=chance(ch, 10), pure_tcm=chance(ch, 10), tcm_cost=ch.integer(0, eligible) if chance(ch, 40)
            else 0, material_over_limit=ch.integer(0, total - eligible) if chance(ch, 20) else 0,
            bed_days=ch.integer(0, 20),
            extra={"ward": pick(ch, (None, "icu", "normal")), "visits": pick(ch, (None, 0, 2, 5)),
                   "night": pick(ch, (None, True, False)), "extra_fee": pick(ch, (None, 0, 5000, 123456))}))
    return tuple(out)


def gen_case(ch: Chooser) -> Case:
    """A random policy (one or two documents) and a small population with claims over one or two years."""
    gen = _PolicyGen(ch)
    files = gen.files()
    years = pick(ch, ((2019,), (2019, 2020), (2020,)))
    if chance(ch, 15):  # one person with many claims: long chains of caps, admissions and deductibles
        persons = _persons(ch, 1, years)
        claims = _claims(ch, persons, ch.integer(15, 40), years)
    else:
        persons = _persons(ch, ch.integer(1, 4), years)
        claims = _claims(ch, persons, ch.integer(0, 14), years)
    as_of = pick(ch, (None, None, None, datetime.date(2019, 8, 1), datetime.date(2020, 12, 31)))
    settings = {"bed_amount": ch.integer(0, 500) * 100} if gen.uses_unit_param and chance(ch, 85) else {}
    if settings and chance(ch, 5):  # not possible from the command line, but the engines must still agree
        settings["bed_amount"] = -settings["bed_amount"] - 1
    return Case(files, "main.pol", persons, claims, interp.Options(as_of, settings))


# ---- running both engines ----------------------------------------------------------------------------------
def build_case(case: Case, directory: Path | None = None) -> Built | None:
    """The case's policy built, or None when the checker refuses it (the generator may make conflicts)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(directory or tmp)
        (root / "polc.toml").write_text("", "utf-8")
        for name, text in case.files.items():
            (root / name).write_text(text, "utf-8")
        try:
            return build(root / case.main)
        except PolicyError:
            return None


def outcome(engine: Callable[[Any, Dataset, interp.Options], interp.Result], built: Built,
            case: Case) -> interp.Result | str:
    """The engine's result, or the text of the EvalError it raised."""
    try:
        return engine(built.graph, Dataset(case.persons, case.claims), case.options)
    except interp.EvalError as exc:
        return f"EvalError: {exc}"


def disagreement(built: Built, case: Case) -> str | None:
    """None when interp and vector agree on every claim and person-year, else what differs."""
    from policy_lang import vector

    want, got = outcome(interp.run, built, case), outcome(vector.run, built, case)
    if isinstance(want, str) or isinstance(got, str):
        return None if want == got else f"interp: {_brief(want)}\nvector: {_brief(got)}"
    for a, b in [*zip(want.claims, got.claims, strict=True), *zip(want.persons, got.persons, strict=True)]:
        if a != b:
            return f"interp: {a}\nvector: {b}"
    return None if len(want.persons) == len(got.persons) else "person-year counts differ"


def _brief(value: interp.Result | str) -> str:
    return value if isinstance(value, str) else f"{len(value.claims)} claims evaluated"
