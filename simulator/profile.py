"""Population profiles: TOML files of sourced parameters, loaded and validated into frozen records."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Final, NoReturn

import attrs
import numpy as np
import numpy.typing as npt

from policy_lang import vocabulary as V

GROUPS: Final = ("resident", "active", "retired")  # person groups: rates, ages and sexes differ
CLASSES: Final = ("resident", "employee")  # claim classes: level mixes and costs differ
LEVELS: Final = (1, 2, 3)
EMPLOYEE_SCHEMES: Final = ("employee", "provincial_direct")
TOLERANCE_CLASSES: Final = ("share", "subshare", "eligible", "prevalence", "rate", "subrate", "cost", "age",
                             "concentration")
META_KEYS: Final = frozenset({"source", "assumed", "note"})
MAX_AGE: Final = 110


class ProfileError(ValueError):
    """A profile that cannot be read or breaks a rule; the message names the file and the key."""


# ---- records ----------------------------------------------------------------------------------------------------
@attrs.frozen
class Tolerance:
    """A realised statistic is ok when |realised - target| <= max(abs, rel * |target|)."""

    abs: float = 0.0
    rel: float = 0.0

    def allows(self, target: float, realised: float) -> bool:
        return abs(realised - target) <= max(self.abs, self.rel * abs(target)) + 1e-12


@attrs.frozen
class AgeBand:
    low: int
    high: int  # inclusive
    share: float


Triple = tuple[float, float, float]  # one value per hospital level 1, 2, 3


@attrs.frozen
class Costs:
    """Hospital-level mix and lognormal cost per claim by level (yuan), with the eligible share's mean."""

    levels: Triple
    mean: Triple
    sigma: Triple
    eligible: Triple


@attrs.frozen
class Holding:
    """A combination of identities held together, and the share of persons holding exactly it."""

    identities: tuple[str, ...]
    share: float


@attrs.frozen
class Identities:
    schemes: tuple[str, ...]  # the schemes whose members may hold identities
    holdings: tuple[Holding, ...]
    midyear_share: float  # share of grants made during the year (a dated `id@YYYY-MM-DD`)

    def prevalence(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for h in self.holdings:
            for ident in h.identities:
                out[ident] = out.get(ident, 0.0) + h.share
        return out

    def any_share(self) -> float:
        return sum(h.share for h in self.holdings)

    def multi_share(self) -> float:
        """Share of identity holders holding more than one identity."""
        total = self.any_share()
        return sum(h.share for h in self.holdings if len(h.identities) > 1) / total if total else 0.0


@attrs.frozen
class Condition:
    """A certified chronic disease (门诊慢特病 or 两病 registration) and the claims it brings."""

    disease: str
    prevalence: float  # share of all persons
    min_age: int
    max_age: int
    age_slope: float  # relative risk exp(slope * (age - 50)) within the age range
    parent: str | None  # held only by holders of this other condition
    claims_per_year: float
    chronic_outpatient_share: float  # the rest are ordinary outpatient claims carrying the disease
    costs: Costs
    admission_rr: float  # relative admission rate of holders
    admission_share: float  # share of holders' admissions that carry the disease
    per_diem: float | None  # yuan per bed day of those admissions


@attrs.frozen
class Tag:
    """A disease carried by a share of admissions, with its cost multiplier."""

    disease: str
    share: float
    cost_multiplier: float


@attrs.frozen
class Designation:
    """Poverty-designated hospitals (沈阳 county_poverty / city_poverty) serving some regions."""

    regions: tuple[str, ...]
    county_share: float
    county_levels: tuple[int, ...]
    city_share: float
    city_levels: tuple[int, ...]


@attrs.frozen
class Implants:
    """Admissions with a pacemaker, joint or stent whose price is above the limit (material_over_limit)."""

    share_at_level3: float
    cost_multiplier: float
    over_limit: tuple[float, float]  # uniform fraction of the out-of-list cost


@attrs.frozen
class Inpatient:
    rate: Mapping[str, float]  # admissions per person-year by group
    dispersion: float  # gamma shape of the person frailty (negative binomial counts)
    person_cost_sigma: float  # lognormal person cost multiplier (mean 1)
    costs: Mapping[str, Costs]  # by class
    eligible_concentration: float
    out_of_area: float
    out_of_province: float  # given out of the pooling area
    referred_in_area: float
    referred_out_of_area: float
    emergency: float
    direct_in_area: float
    direct_out_of_area: float  # in the province
    direct_out_of_province: float
    grassroots_at_level1: float
    tcm_institution: float
    pure_tcm_at_tcm: float
    pure_tcm_elsewhere: float
    tcm_any_elsewhere: float
    tcm_share_at_tcm: tuple[float, float]
    tcm_share_elsewhere: tuple[float, float]
    tcm_share_pure: tuple[float, float]
    per_diem: Triple
    bed_days_sigma: float
    designation: Designation | None
    implants: Implants | None
    tags: tuple[Tag, ...]

    def referred(self) -> float:
        return self.out_of_area * self.referred_out_of_area + (1 - self.out_of_area) * self.referred_in_area

    def direct(self) -> float:
        out, prov = self.out_of_area, self.out_of_area * self.out_of_province
        return (1 - out) * self.direct_in_area + (out - prov) * self.direct_out_of_area \
            + prov * self.direct_out_of_province

    def pure_tcm(self) -> float:
        return self.tcm_institution * self.pure_tcm_at_tcm + (1 - self.tcm_institution) * self.pure_tcm_elsewhere


@attrs.frozen
class Outpatient:
    visits: Mapping[str, float]  # ordinary visits per person-year by group
    dispersion: float
    costs: Mapping[str, Costs]  # by class
    eligible_spread: float  # per-claim eligible share: triangular within ± this of its mean (all non-inpatient)
    grassroots_at_level1: float
    tcm_institution: float
    out_of_area: float
    emergency: float


@attrs.frozen
class Episodes:
    """Persons starting a course of claims (maternity, high-value drugs) and the claims of each course."""

    share: float  # of the persons at risk
    min_age: int
    max_age: int
    female_only: bool
    claims_per_course: float  # mean, at least one
    costs: Costs


@attrs.frozen
class Calibration:
    """A population statistic the generator is calibrated to (value ± tolerance, or a minimum)."""

    value: float | None
    minimum: float | None
    tolerance: str
    source: str


@attrs.frozen
class Profile:
    name: str
    path: str
    title: str
    policies: tuple[str, ...]
    tolerances: Mapping[str, Tolerance]
    sampling_z: float  # a count-based statistic is also ok within this many standard errors
    schemes: Mapping[str, float]
    retired: Mapping[str, float]  # by employee scheme
    ages: Mapping[str, tuple[AgeBand, ...]]  # by group
    female: Mapping[str, float]
    resettled: Mapping[str, float]
    regions: Mapping[str, float]  # the rest of the persons have no region
    identities: Identities | None
    inpatient: Inpatient
    outpatient: Outpatient
    conditions: tuple[Condition, ...]
    maternity: Episodes | None
    high_value_drug: Episodes | None
    targets: Mapping[str, Calibration]
    # Values a simulation assumes for parameters the documents leave unspecified (按床日定额 …):
    # name -> (value as written in yuan or %, why it is assumed). `--set` overrides them.
    parameters: Mapping[str, tuple[str, str]] = attrs.field(factory=dict)

    @property
    def region_names(self) -> tuple[str, ...]:
        return tuple(self.regions)

    @property
    def disease_names(self) -> tuple[str, ...]:
        """Canonical disease ids or Chinese names, conditions first, then admission tags."""
        return tuple(dict.fromkeys([*(c.disease for c in self.conditions),
                                    *(t.disease for t in self.inpatient.tags)]))

    def group_shares(self) -> dict[str, float]:
        """Share of persons in each group (resident / active / retired employees)."""
        out = dict.fromkeys(GROUPS, 0.0)
        for scheme, share in self.schemes.items():
            if scheme == "resident":
                out["resident"] += share
            else:
                out["retired"] += share * self.retired.get(scheme, 0.0)
                out["active"] += share * (1 - self.retired.get(scheme, 0.0))
        return out

    def groups(self) -> tuple[str, ...]:
        return tuple(g for g, s in self.group_shares().items() if s > 0)

    def classes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(group_class(g) for g in self.groups()))


def group_class(group: str) -> str:
    return "resident" if group == "resident" else "employee"


def mean_age(bands: Sequence[AgeBand]) -> float:
    return sum(b.share * (b.low + b.high) / 2 for b in bands)


def age_distribution(bands: Sequence[AgeBand]) -> npt.NDArray[np.float64]:
    """Probability of each age 0..MAX_AGE (uniform within a band)."""
    out = np.zeros(MAX_AGE + 1)
    for b in bands:
        out[b.low:b.high + 1] += b.share / (b.high - b.low + 1)
    return out


def condition_curves(profile: Profile) -> npt.NDArray[np.float64]:
    """Probability of holding each condition at each age (rows: conditions), averaging to its prevalence."""
    ages = np.arange(MAX_AGE + 1)
    population = sum((share * age_distribution(profile.ages[g]) for g, share in profile.group_shares().items()
                      if share > 0), np.zeros(MAX_AGE + 1))
    curves = np.zeros((len(profile.conditions), MAX_AGE + 1))
    index = {c.disease: i for i, c in enumerate(profile.conditions)}
    for i, cond in enumerate(profile.conditions):
        if cond.parent is not None:
            parent = profile.conditions[index[cond.parent]]
            curves[i] = curves[index[cond.parent]] * (cond.prevalence / parent.prevalence)
            continue
        weight = np.where((ages >= cond.min_age) & (ages <= cond.max_age), np.exp(cond.age_slope * (ages - 50)), 0)
        mean = float(population @ weight)
        curves[i] = cond.prevalence * weight / mean if mean > 0 else 0
    return curves


# ---- finding profiles -------------------------------------------------------------------------------------------
def _profiles_dir() -> Path:
    return Path(str(resources.files("simulator") / "profiles"))


def available_profiles() -> list[str]:
    """Names of the bundled profiles (the file names without .toml), sorted."""
    return sorted(p.stem for p in _profiles_dir().glob("*.toml"))


def profile_path(name: str) -> Path:
    """A bundled profile by name, or a .toml file by path; ProfileError listing the known names."""
    if name.endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise ProfileError(f"{name}: no such profile file")
        return path
    path = _profiles_dir() / f"{name}.toml"
    if not path.is_file():
        raise ProfileError(f"unknown profile `{name}`; known profiles: {', '.join(available_profiles())}")
    return path


def load_profile(name: str) -> Profile:
    """Read, source-check and validate a profile (by bundled name or .toml path)."""
    path = profile_path(name)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"{path}: {exc}") from None
    check_sources(str(path), data)
    return _build(_Table(str(path), "", data), path)


# ---- every value has a source ----------------------------------------------------------------------------------
def check_sources(path: str, data: Mapping[str, object], where: str = "", covered: bool = False) -> None:
    """Every number must sit in a table (or inside one) carrying a `source` or an `assumed` text."""
    own = [k for k in ("source", "assumed") if k in data]
    for k in own:
        if not isinstance(data[k], str) or not str(data[k]).strip():
            raise ProfileError(f"{path}: {_join(where, k)}: must be a non-empty text")
    covered = covered or (bool(own) and bool(where))
    for key, value in data.items():
        _check_value(path, _join(where, key), value, covered)


def _check_value(path: str, where: str, value: object, covered: bool) -> None:
    if isinstance(value, dict):
        check_sources(path, value, where, covered)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_value(path, f"{where}[{i}]", item, covered)
    elif isinstance(value, int | float) and not isinstance(value, bool) and not covered:
        raise ProfileError(f"{path}: {where}: a value without `source` or `assumed` (give one in its table)")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


# ---- a checked view of one TOML table ---------------------------------------------------------------------------
class _Table:
    """Typed access to a TOML table; errors name the file and the dotted key; unknown keys are errors."""

    def __init__(self, path: str, where: str, data: Mapping[str, object]) -> None:
        self.path, self.where, self.data = path, where, data
        self.used: set[str] = set(META_KEYS)

    def fail(self, key: str | None, message: str) -> NoReturn:
        where = self.where if key is None else _join(self.where, key)
        raise ProfileError(f"{self.path}: {where or '(top level)'}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> object:
        self.used.add(key)
        if key not in self.data:
            self.fail(key, "missing")
        return self.data[key]

    def table(self, key: str) -> _Table:
        value = self.raw(key)
        if not isinstance(value, dict):
            self.fail(key, "must be a table")
        return _Table(self.path, _join(self.where, key), value)

    def tables(self, key: str) -> list[_Table]:
        value = self.raw(key)
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.fail(key, "must be an array of tables ([[...]])")
        return [_Table(self.path, f"{_join(self.where, key)}[{i}]", v) for i, v in enumerate(value)]

    def number(self, key: str, low: float = 0.0, high: float = math.inf) -> float:
        value = self.raw(key)
        if isinstance(value, dict):
            inner = _Table(self.path, _join(self.where, key), value)
            number = inner.number("value", low, high)
            inner.close()
            return number
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.fail(key, f"must be a number, not {value!r}")
        if not low <= value <= high:
            self.fail(key, f"{value} is out of range: expected {low} to {high}")
        return float(value)

    def share(self, key: str) -> float:
        return self.number(key, 0.0, 1.0)

    def integer(self, key: str, low: int, high: int) -> int:
        value = self.number(key, low, high)
        if value != int(value):
            self.fail(key, f"must be a whole number, not {value}")
        return int(value)

    def text(self, key: str) -> str:
        value = self.raw(key)
        if not isinstance(value, str) or not value.strip():
            self.fail(key, "must be a non-empty text")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.raw(key)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(key, "must be a list of texts")
        return tuple(value)

    def flag(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            self.fail(key, "must be true or false")
        return value

    def pair(self, key: str) -> tuple[float, float]:
        value = self.raw(key)
        if not (isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value)
                and 0 <= value[0] <= value[1] <= 1):
            self.fail(key, "must be [low, high] with 0 <= low <= high <= 1")
        return float(value[0]), float(value[1])

    def keyed(self, key: str, low: float = 0.0, high: float = math.inf) -> dict[str, float]:
        """A table of name = number (meta keys aside)."""
        table = self.table(key)
        out = {k: table.number(k, low, high) for k in table.data if k not in META_KEYS}
        table.close()
        return out

    def shares(self, key: str, exact: bool = True) -> dict[str, float]:
        """Shares that sum to 1 (exact) or to at most 1."""
        out = self.keyed(key, 0.0, 1.0)
        total = sum(out.values())
        if (exact and abs(total - 1) > 1e-6) or total > 1 + 1e-6:
            self.fail(key, f"shares sum to {total:.6g}, expected {'1' if exact else 'at most 1'}")
        return out

    def per_level(self, key: str, low: float = 0.0, high: float = math.inf) -> Triple:
        """One number for every level, or a table {1 = …, 2 = …, 3 = …}."""
        value = self.raw(key)
        if not isinstance(value, dict) or "value" in value:
            number = self.number(key, low, high)
            return number, number, number
        table = self.table(key)
        out = tuple(table.number(str(level), low, high) for level in LEVELS)
        table.close()
        return out[0], out[1], out[2]

    def close(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            self.fail(unknown[0], f"unknown key (known here: {', '.join(sorted(self.used - META_KEYS))})")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# ---- building the profile --------------------------------------------------------------------------------------
def _build(top: _Table, path: Path) -> Profile:
    head = top.table("profile")
    name, title = head.text("name"), head.text("title")
    policies = head.texts("policies") if head.has("policies") else ()
    head.close()
    persons = top.table("persons")
    schemes = _schemes(persons)
    profile = Profile(
        name=name, path=str(path), title=title, policies=policies,
        tolerances=_tolerances(top.table("tolerances")),
        sampling_z=top.table("tolerances").number("sampling_z", 0.0, 10.0),
        schemes=schemes,
        retired=persons.keyed("retired", 0.0, 1.0) if persons.has("retired") else {},
        ages=_ages(persons.table("age")),
        female=persons.keyed("female", 0.0, 1.0),
        resettled=persons.keyed("resettled", 0.0, 1.0),
        regions=persons.shares("regions", exact=False) if persons.has("regions") else {},
        identities=_identities(top.table("identities")) if top.has("identities") else None,
        inpatient=_inpatient(top.table("inpatient")),
        outpatient=_outpatient(top.table("outpatient")),
        conditions=tuple(_condition(t) for t in top.tables("chronic")) if top.has("chronic") else (),
        maternity=_episodes(top.table("maternity"), True) if top.has("maternity") else None,
        high_value_drug=_episodes(top.table("high_value_drug"), False) if top.has("high_value_drug") else None,
        targets=_targets(top.table("targets")),
        parameters=_parameters(top.table("parameters")) if top.has("parameters") else {},
    )
    persons.close()
    top.close()
    _validate(profile, top)
    return profile


def _parameters(table: _Table) -> dict[str, tuple[str, str]]:
    """`name = { value = "80", assumed = "why" }`: a value for an unspecified policy parameter."""
    out = {}
    for name in [k for k in table.data if k not in META_KEYS]:
        entry = table.table(name)
        value = entry.raw("value")
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            entry.fail("value", "must be an amount or a rate")
        why = entry.data.get("assumed") or entry.data.get("source")
        if not isinstance(why, str) or not why.strip():
            entry.fail(None, "needs `assumed` or `source`: say why this value")
        entry.close()
        out[name] = (str(value), why)
    table.close()
    return out


def _schemes(persons: _Table) -> dict[str, float]:
    schemes = persons.shares("schemes")
    for scheme in schemes:
        if scheme not in V.SCHEMES:
            persons.table("schemes").fail(scheme, f"unknown scheme; known: {', '.join(V.SCHEMES)}")
    return schemes


def _tolerances(table: _Table) -> dict[str, Tolerance]:
    out: dict[str, Tolerance] = {}
    table.used.add("sampling_z")
    for name in TOLERANCE_CLASSES:
        inner = table.table(name)
        out[name] = Tolerance(inner.number("abs") if inner.has("abs") else 0.0,
                              inner.number("rel") if inner.has("rel") else 0.0)
        inner.close()
    table.close()
    return out


def _ages(table: _Table) -> dict[str, tuple[AgeBand, ...]]:
    out: dict[str, tuple[AgeBand, ...]] = {}
    for group in [k for k in table.data if k not in META_KEYS]:
        if group not in GROUPS:
            table.fail(group, f"unknown group; known: {', '.join(GROUPS)}")
        inner = table.table(group)
        out[group] = _bands(inner)
        inner.close()
    table.close()
    return out


def _bands(table: _Table) -> tuple[AgeBand, ...]:
    value = table.raw("bands")
    if not isinstance(value, list) or not value or not all(
            isinstance(b, list) and len(b) == 3 and all(_is_number(x) for x in b) for b in value):
        table.fail("bands", "must be a list of [low, high, share]")
    bands = tuple(AgeBand(int(b[0]), int(b[1]), float(b[2])) for b in value)
    if any(not 0 <= b.low <= b.high <= MAX_AGE or b.share < 0 for b in bands):
        table.fail("bands", f"each band needs 0 <= low <= high <= {MAX_AGE} and a share >= 0")
    if abs(sum(b.share for b in bands) - 1) > 1e-6:
        table.fail("bands", "the shares must sum to 1")
    return bands


def _identities(table: _Table) -> Identities:
    schemes = table.texts("schemes")
    holdings_table = table.table("holdings")
    holdings = []
    for key in [k for k in holdings_table.data if k not in META_KEYS]:
        idents = tuple(i.strip() for i in key.split(";"))
        bad = [i for i in idents if i not in V.IDENTITIES]
        if bad or len(set(idents)) != len(idents):
            holdings_table.fail(key, f"identities must be distinct ids among: {', '.join(V.IDENTITIES)}")
        holdings.append(Holding(idents, holdings_table.share(key)))
    holdings_table.close()
    if sum(h.share for h in holdings) > 1 + 1e-6:
        table.fail("holdings", "shares sum to more than 1")
    out = Identities(schemes, tuple(holdings), table.share("midyear_share"))
    table.close()
    return out


def _costs(table: _Table) -> Costs:
    levels = table.per_level("levels", 0.0, 1.0)
    if abs(sum(levels) - 1) > 1e-6:
        table.fail("levels", "the level shares must sum to 1")
    return Costs(levels, table.per_level("cost", 0.01), table.per_level("sigma", 0.0, 3.0),
                 table.per_level("eligible", 0.01, 0.99))


def _by_class(table: _Table) -> dict[str, Costs]:
    out: dict[str, Costs] = {}
    for cls in CLASSES:
        if table.has(cls):
            inner = table.table(cls)
            out[cls] = _costs(inner)
            inner.close()
    return out


def _inpatient(table: _Table) -> Inpatient:
    flags, tcm, beds = table.table("flags"), table.table("tcm"), table.table("bed_days")
    out = Inpatient(
        rate=table.keyed("rate", 0.0, 10.0), dispersion=table.number("dispersion", 0.01, 100.0),
        person_cost_sigma=table.number("person_cost_sigma", 0.0, 3.0), costs=_by_class(table),
        eligible_concentration=table.number("eligible_concentration", 1.0, 10_000.0),
        out_of_area=flags.share("out_of_area"), out_of_province=flags.share("out_of_province"),
        referred_in_area=flags.share("referred_in_area"), referred_out_of_area=flags.share("referred_out_of_area"),
        emergency=flags.share("emergency"), direct_in_area=flags.share("direct_in_area"),
        direct_out_of_area=flags.share("direct_out_of_area"),
        direct_out_of_province=flags.share("direct_out_of_province"),
        grassroots_at_level1=flags.share("grassroots_at_level1"),
        tcm_institution=tcm.share("tcm_institution"), pure_tcm_at_tcm=tcm.share("pure_tcm_at_tcm"),
        pure_tcm_elsewhere=tcm.share("pure_tcm_elsewhere"), tcm_any_elsewhere=tcm.share("tcm_any_elsewhere"),
        tcm_share_at_tcm=tcm.pair("tcm_share_at_tcm"), tcm_share_elsewhere=tcm.pair("tcm_share_elsewhere"),
        tcm_share_pure=tcm.pair("tcm_share_pure"),
        per_diem=beds.per_level("per_diem", 1.0), bed_days_sigma=beds.number("sigma", 0.0, 3.0),
        designation=_designation(table.table("designation")) if table.has("designation") else None,
        implants=_implants(table.table("implants")) if table.has("implants") else None,
        tags=tuple(_tag(t) for t in table.tables("diseases")) if table.has("diseases") else (),
    )
    for inner in (flags, tcm, beds, table):
        inner.close()
    return out


def _designation(table: _Table) -> Designation:
    out = Designation(table.texts("regions"), table.share("county_share"), _levels(table, "county_levels"),
                      table.share("city_share"), _levels(table, "city_levels"))
    table.close()
    return out


def _levels(table: _Table, key: str) -> tuple[int, ...]:
    value = table.raw(key)
    if not isinstance(value, list) or not all(v in LEVELS for v in value):
        table.fail(key, "must be a list of hospital levels (1, 2, 3)")
    return tuple(int(v) for v in value)


def _implants(table: _Table) -> Implants:
    out = Implants(table.share("share_at_level3"), table.number("cost_multiplier", 0.01, 100.0),
                   table.pair("over_limit"))
    table.close()
    return out


def _tag(table: _Table) -> Tag:
    out = Tag(_disease(table), table.share("share"), table.number("cost_multiplier", 0.01, 100.0))
    table.close()
    return out


def _disease(table: _Table) -> str:
    disease = table.text("disease")
    if any(ch in disease for ch in ";@") or disease != disease.strip():
        table.fail("disease", "a disease name may not contain `;` or `@` or surrounding spaces")
    return disease


def _outpatient(table: _Table) -> Outpatient:
    out = Outpatient(
        visits=table.keyed("visits", 0.0, 365.0), dispersion=table.number("dispersion", 0.01, 100.0),
        costs=_by_class(table), eligible_spread=table.share("eligible_spread"),
        grassroots_at_level1=table.share("grassroots_at_level1"), tcm_institution=table.share("tcm_institution"),
        out_of_area=table.share("out_of_area"), emergency=table.share("emergency"))
    table.close()
    return out


def _condition(table: _Table) -> Condition:
    out = Condition(
        disease=_disease(table), prevalence=table.share("prevalence"),
        min_age=table.integer("min_age", 0, MAX_AGE), max_age=table.integer("max_age", 0, MAX_AGE),
        age_slope=table.number("age_slope", -1.0, 1.0),
        parent=table.text("parent") if table.has("parent") else None,
        claims_per_year=table.number("claims_per_year", 0.0, 200.0),
        chronic_outpatient_share=table.share("chronic_outpatient_share"), costs=_costs(table),
        admission_rr=table.number("admission_rr", 0.0, 20.0) if table.has("admission_rr") else 1.0,
        admission_share=table.share("admission_share") if table.has("admission_share") else 0.0,
        per_diem=table.number("per_diem", 1.0) if table.has("per_diem") else None)
    if out.min_age > out.max_age:
        table.fail("max_age", "must not be below min_age")
    table.close()
    return out


def _episodes(table: _Table, female_only: bool) -> Episodes:
    out = Episodes(table.share("share"), table.integer("min_age", 0, MAX_AGE), table.integer("max_age", 0, MAX_AGE),
                   female_only, table.number("claims_per_course", 1.0, 200.0), _costs(table))
    table.close()
    return out


def _targets(table: _Table) -> dict[str, Calibration]:
    out: dict[str, Calibration] = {}
    for key in ("top5_cost_share", "below_10000_share"):
        inner = table.table(key)
        value = inner.share("value") if inner.has("value") else None
        minimum = inner.share("min") if inner.has("min") else None
        if (value is None) == (minimum is None):
            inner.fail(None, "give exactly one of `value` and `min`")
        source = inner.text("source") if inner.has("source") else inner.text("assumed")
        tolerance = inner.text("tolerance") if inner.has("tolerance") else "concentration"
        if tolerance not in TOLERANCE_CLASSES:
            inner.fail("tolerance", f"unknown tolerance class; known: {', '.join(TOLERANCE_CLASSES)}")
        out[key] = Calibration(value, minimum, tolerance, source)
        inner.close()
    table.close()
    return out


# ---- cross-checks ----------------------------------------------------------------------------------------------
def _validate(profile: Profile, top: _Table) -> None:
    for scheme in profile.schemes:
        if scheme in EMPLOYEE_SCHEMES and scheme not in profile.retired:
            top.fail("persons.retired", f"missing the retired share of scheme `{scheme}`")
    groups = profile.groups()
    for key, mapping in (("persons.age", profile.ages), ("persons.female", profile.female),
                         ("persons.resettled", profile.resettled), ("inpatient.rate", profile.inpatient.rate),
                         ("outpatient.visits", profile.outpatient.visits)):
        missing = [g for g in groups if g not in mapping]
        if missing:
            top.fail(key, f"missing group(s) {', '.join(missing)} (the profile has {', '.join(groups)})")
    for key, costs in (("inpatient", profile.inpatient.costs), ("outpatient", profile.outpatient.costs)):
        missing = [c for c in profile.classes() if c not in costs]
        if missing:
            top.fail(key, f"missing the cost table(s) of class {', '.join(missing)}")
    _validate_conditions(profile, top)
    _validate_regions(profile, top)
    curves = condition_curves(profile)
    for i, cond in enumerate(profile.conditions):
        if cond.prevalence > 0 and curves[i].max() == 0:
            top.fail(f"chronic[{i}]", f"`{cond.disease}`: nobody in the population is aged {cond.min_age}-{cond.max_age}")
        if curves[i].max() > 1:
            top.fail(f"chronic[{i}]", f"`{cond.disease}`: prevalence {cond.prevalence} with age_slope "
                     f"{cond.age_slope} needs a probability above 1 at some age")


def _validate_conditions(profile: Profile, top: _Table) -> None:
    seen: dict[str, Condition] = {}
    for i, cond in enumerate(profile.conditions):
        where = f"chronic[{i}]"
        if cond.disease in seen:
            top.fail(where, f"disease `{cond.disease}` is listed twice")
        if cond.parent is not None:
            parent = seen.get(cond.parent)
            if parent is None:
                top.fail(f"{where}.parent", "must name a condition listed before this one")
            if cond.prevalence > parent.prevalence:
                top.fail(f"{where}.prevalence", "is above the prevalence of its parent")
        seen[cond.disease] = cond
    tagged = {c.disease for c in profile.conditions if c.admission_share > 0}
    for i, tag in enumerate(profile.inpatient.tags):
        if tag.disease in tagged:
            top.fail(f"inpatient.diseases[{i}]", f"`{tag.disease}` is already carried by a condition's admissions")
    if sum(t.share for t in profile.inpatient.tags) > 1:
        top.fail("inpatient.diseases", "shares sum to more than 1")


def _validate_regions(profile: Profile, top: _Table) -> None:
    designation = profile.inpatient.designation
    if designation is None:
        return
    unknown = [r for r in designation.regions if r not in profile.regions]
    if unknown:
        top.fail("inpatient.designation.regions", f"not among persons.regions: {', '.join(unknown)}")


# ---- what the profile promises: the targets `polc population describe` checks ----------------------------------
@attrs.frozen
class Expectation:
    """A statistic's target: `value` within `tolerance`, or at least `minimum`."""

    key: str
    label: str
    value: float | None
    kind: str  # the tolerance class, also how the value prints
    tolerance: Tolerance
    minimum: float | None = None

    sampling_z: float = 0.0

    def ok(self, realised: float, count: float | None = None, error: float | None = None) -> bool:
        """Within tolerance, or within sampling_z standard errors: of a sample of `count` for shares and
        rates, or the given empirical `error` (the standard error of a mean cost, a mean age)."""
        if self.minimum is not None:
            return realised >= self.minimum
        if self.value is None:
            return False
        allowance = self.sampling_z * (error if error is not None else self.standard_error(count))
        return self.tolerance.allows(self.value, realised) or abs(realised - self.value) <= allowance

    def standard_error(self, count: float | None) -> float:
        """Binomial (shares) or Poisson (rates per person) standard error of the target; 0 for other kinds."""
        if not count or self.value is None:
            return 0.0
        if self.kind in ("share", "subshare", "prevalence"):
            return math.sqrt(self.value * (1 - self.value) / count)
        if self.kind in ("rate", "subrate"):
            return math.sqrt(self.value / count)
        return 0.0


def expectations(profile: Profile) -> list[Expectation]:
    """Every target of the profile, in display order (keys match simulator.population.measure)."""
    tol = profile.tolerances
    out: list[Expectation] = []

    def add(key: str, label: str, value: float, kind: str) -> None:
        out.append(Expectation(key, label, value, kind, tol[kind], sampling_z=profile.sampling_z))

    _person_expectations(profile, add)
    _identity_expectations(profile, add)
    _inpatient_expectations(profile, add)
    _outpatient_expectations(profile, add)
    for name, cal in profile.targets.items():
        out.append(Expectation(name, _CALIBRATION_LABELS[name], cal.value, cal.tolerance, tol[cal.tolerance],
                               cal.minimum))
    return out


_CALIBRATION_LABELS = {"top5_cost_share": "cost share of the top 5% of patients",
                       "below_10000_share": "admissions below 10000 yuan"}
_Add = Callable[[str, str, float, str], None]


def _person_expectations(profile: Profile, add: _Add) -> None:
    for scheme, share in profile.schemes.items():
        add(f"scheme.{scheme}", f"scheme share: {scheme}", share, "share")
    for scheme in profile.schemes:
        if scheme in profile.retired:
            add(f"retired.{scheme}", f"retired share of {scheme}", profile.retired[scheme], "share")
    for group in profile.groups():
        add(f"age.{group}", f"mean age: {group}", mean_age(profile.ages[group]), "age")
        add(f"female.{group}", f"female share: {group}", profile.female[group], "share")
        add(f"resettled.{group}", f"resettled share: {group}", profile.resettled[group], "prevalence")
    for region, share in profile.regions.items():
        add(f"region.{region}", f"region share: {region}", share, "prevalence")


def _identity_expectations(profile: Profile, add: _Add) -> None:
    ids = profile.identities
    if ids is None:
        return
    who = "/".join(ids.schemes)
    for ident, share in ids.prevalence().items():
        add(f"identity.{ident}", f"identity prevalence ({who}): {ident}", share, "prevalence")
    add("identity.any", f"holding any identity ({who})", ids.any_share(), "share")
    add("identity.multi", "holders with several identities", ids.multi_share(), "subshare")
    add("identity.midyear", "grants dated during the year", ids.midyear_share, "share")


def _inpatient_expectations(profile: Profile, add: _Add) -> None:
    ip = profile.inpatient
    for group in profile.groups():
        add(f"admissions.{group}", f"admissions per person-year: {group}", ip.rate[group], "rate")
    for cls in profile.classes():
        costs = ip.costs[cls]
        for level in LEVELS:
            add(f"admission_level.{cls}.{level}", f"admissions at level {level}: {cls}", costs.levels[level - 1],
                "share")
        for level in LEVELS:
            if costs.levels[level - 1] > 0:
                add(f"admission_cost.{cls}.{level}", f"mean cost per admission, level {level}: {cls}",
                    costs.mean[level - 1], "cost")
        for level in LEVELS:
            if costs.levels[level - 1] > 0:
                add(f"eligible_share.{cls}.{level}", f"eligible share of cost, level {level}: {cls}",
                    costs.eligible[level - 1], "eligible")
    _flag_expectations(ip, add)
    for tag in ip.tags:
        add(f"inpatient.disease.{tag.disease}", f"admissions for {tag.disease}", tag.share, "prevalence")


def _flag_expectations(ip: Inpatient, add: _Add) -> None:
    add("inpatient.out_of_area", "admissions out of the pooling area", ip.out_of_area, "share")
    add("inpatient.out_of_province", "admissions out of the province", ip.out_of_area * ip.out_of_province,
        "share")
    add("inpatient.referred", "admissions referred", ip.referred(), "share")
    add("inpatient.emergency", "admissions as emergencies", ip.emergency, "share")
    add("inpatient.direct_settlement", "admissions settled directly", ip.direct(), "share")
    add("inpatient.grassroots_level1", "level-1 admissions at grassroots institutions", ip.grassroots_at_level1,
        "subshare")
    add("inpatient.tcm_institution", "admissions at TCM institutions", ip.tcm_institution, "share")
    add("inpatient.pure_tcm", "admissions with pure TCM treatment", ip.pure_tcm(), "prevalence")
    if ip.designation is not None:
        add("inpatient.county_poverty", "county_poverty share of eligible stays (designated regions)",
            ip.designation.county_share, "subshare")
        add("inpatient.city_poverty", "city_poverty share of eligible stays (designated regions)",
            ip.designation.city_share, "subshare")
    if ip.implants is not None:
        add("inpatient.implants", "level-3 admissions with material_over_limit", ip.implants.share_at_level3,
            "share")


def _outpatient_expectations(profile: Profile, add: _Add) -> None:
    op = profile.outpatient
    for group in profile.groups():
        add(f"visits.{group}", f"ordinary outpatient visits per person-year: {group}", op.visits[group], "rate")
    for cls in profile.classes():
        for level in LEVELS:
            if op.costs[cls].levels[level - 1] > 0:
                add(f"visit_cost.{cls}.{level}", f"mean cost per visit, level {level}: {cls}",
                    op.costs[cls].mean[level - 1], "cost")
    for cond in profile.conditions:
        add(f"chronic.{cond.disease}", f"chronic prevalence: {cond.disease}", cond.prevalence, "prevalence")
        add(f"chronic_claims.{cond.disease}", f"claims per holder: {cond.disease}", cond.claims_per_year,
            "subrate")
    for name, spec in (("maternity", profile.maternity), ("high_value_drug", profile.high_value_drug)):
        if spec is not None:
            who = f"{'women' if spec.female_only else 'persons'} aged {spec.min_age}-{spec.max_age}"
            add(f"{name}.share", f"{name}: share of {who} with claims", spec.share, "prevalence")
            add(f"{name}.claims", f"{name}: claims per course", spec.claims_per_course, "subrate")
