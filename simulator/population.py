"""Synthetic populations: persons and claims drawn from a profile with NumPy, block by block, as Columns."""

from __future__ import annotations

import datetime
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from policy_lang import vocabulary as V
from policy_lang.columns import (
    DESIGNATIONS,
    KINDS,
    NO_DATE,
    SCHEMES,
    SEXES,
    Claims,
    Columns,
    Persons,
    day_number,
)
from simulator.profile import (
    CLASSES,
    GROUPS,
    MAX_AGE,
    Costs,
    Profile,
    age_distribution,
    condition_curves,
    expectations,
)

BLOCK = 100_000  # persons per random-number block: fixed, so the output never depends on how it is chunked
IDENTITY_NAMES: tuple[str, ...] = tuple(V.IDENTITIES)
MAX_CLAIM_SEQ = 9_999  # claims per person (ids carry a 4-digit sequence)
_F, _M = SEXES.index("F"), SEXES.index("M")
_KIND = {k: np.int8(i) for i, k in enumerate(KINDS)}
_RESIDENT = SCHEMES.index("resident")
_STREAMS = ("persons", "identities", "chronic", "inpatient", "outpatient", "conditions", "maternity", "drugs")
Array = npt.NDArray[Any]  # looser than policy_lang.columns.Array, so that mypy allows arithmetic
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


# ---- public API ---------------------------------------------------------------------------------------------------
def generate(profile: Profile, size: int, seed: int, year: int = 2023) -> Columns:
    """A whole population of `size` persons (person ids P0000001…), identical for the same arguments."""
    return concat(list(generate_chunks(profile, size, seed, year)))


def generate_chunks(profile: Profile, size: int, seed: int, year: int = 2023,
                    chunk_persons: int = BLOCK) -> Iterator[Columns]:
    """The population in chunks of `chunk_persons` persons (their claims with them); ids are global.

    Randomness is drawn per fixed block of BLOCK persons from SeedSequence([seed, block]), so every
    chunking, and every order of generating the blocks, gives the same population.
    """
    check_arguments(size, seed, year)
    if chunk_persons < 1:
        raise ValueError(f"chunk size must be at least 1, not {chunk_persons}")
    blocks = (generate_block(profile, size, seed, year, b) for b in range(block_count(size)))
    return rechunk(blocks, chunk_persons)


def block_count(size: int) -> int:
    return -(-size // BLOCK)


def generate_block(profile: Profile, size: int, seed: int, year: int, block: int) -> Columns:
    """Persons block*BLOCK … of a population of `size` (independent of every other block)."""
    check_arguments(size, seed, year)
    first = block * BLOCK
    n = min(BLOCK, size - first)
    if not 0 <= block < block_count(size):
        raise ValueError(f"block {block} is outside a population of {size} persons")
    rngs = dict(zip(_STREAMS, (np.random.default_rng(s) for s in
                               np.random.SeedSequence([seed, block]).spawn(len(_STREAMS))), strict=True))
    return _Block(profile, rngs, n, first, year, id_width(size)).columns()


def check_arguments(size: int, seed: int, year: int) -> None:
    if size < 1:
        raise ValueError(f"size must be at least 1, not {size}")
    if seed < 0:
        raise ValueError(f"seed must be zero or more, not {seed}")
    if not 1900 <= year <= 2100:
        raise ValueError(f"year {year} is out of range 1900…2100")


def id_width(size: int) -> int:
    return max(7, len(str(size)))


# ---- one block ----------------------------------------------------------------------------------------------------
@attrs.define
class _Draft:
    """Claims of one kind of encounter before they are merged and sorted."""

    owner: Ints
    kind: npt.NDArray[np.int8]
    level: npt.NDArray[np.int8]
    total: Ints
    eligible: Ints
    day: npt.NDArray[np.int32]
    flags: dict[str, Array] = attrs.field(factory=dict)
    money: dict[str, Ints] = attrs.field(factory=dict)  # tcm_cost, material_over_limit
    bed_days: npt.NDArray[np.int32] | None = None
    designation: npt.NDArray[np.int8] | None = None
    pair_claim: Ints = attrs.field(factory=lambda: np.zeros(0, np.int64))  # claim diseases
    pair_code: Ints = attrs.field(factory=lambda: np.zeros(0, np.int64))


_FLAG_DEFAULTS = {"grassroots": False, "tcm_institution": False, "referred": False, "in_province": True,
                  "in_pooling_area": True, "direct_settlement": True, "emergency": False, "pure_tcm": False}


class _Block:
    """Draws the persons of one block, then each kind of claim, then merges the claims person-sorted."""

    def __init__(self, profile: Profile, rngs: dict[str, np.random.Generator], n: int, first: int, year: int,
                 width: int) -> None:
        self.p, self.rngs, self.n, self.first, self.width = profile, rngs, n, first, width
        self.year_start = day_number(datetime.date(year, 1, 1))
        self.year_days = (datetime.date(year + 1, 1, 1) - datetime.date(year, 1, 1)).days
        self.diseases = {d: i for i, d in enumerate(profile.disease_names)}
        self.regions = {r: i for i, r in enumerate(profile.region_names)}

    # -- persons
    def columns(self) -> Columns:
        rng = self.rngs["persons"]
        scheme = _pick(rng, [SCHEMES.index(s) for s in self.p.schemes], list(self.p.schemes.values()), self.n)
        self.scheme = scheme
        retired_share = np.array([self.p.retired.get(s, 0.0) for s in SCHEMES])
        self.retired = (scheme != _RESIDENT) & (rng.random(self.n) < retired_share[scheme])
        self.group = np.where(scheme == _RESIDENT, 0, np.where(self.retired, 2, 1)).astype(np.int8)
        self.cls = (self.group > 0).astype(np.int8)
        self.age = self._ages(rng)
        female = _group_values(self.p.female)[self.group]
        self.sex = np.where(rng.random(self.n) < female, _F, _M).astype(np.int8)
        self.region = _pick(rng, [*range(len(self.regions)), -1], [*self.p.regions.values(), -1.0], self.n)
        resettled = rng.random(self.n) < _group_values(self.p.resettled)[self.group]
        grant_person, grant_identity, grant_since = self._grants()
        chronic_person, chronic_disease = self._chronic()
        persons = Persons(
            person_id=format_ids([("P", self.first + 1 + np.arange(self.n), self.width)]),
            scheme=scheme.astype(np.int8), retired=self.retired, age=self.age.astype(np.int16), sex=self.sex,
            region=self.region.astype(np.int32), region_names=self.p.region_names, resettled=resettled,
            grant_person=grant_person, grant_identity=grant_identity, grant_since=grant_since,
            chronic_person=chronic_person, chronic_disease=chronic_disease)
        drafts = [self._inpatient(), self._outpatient(), self._condition_claims(), *self._episodes()]
        claims = _merge(drafts, self.first, self.width)
        return Columns(persons, claims, IDENTITY_NAMES, self.p.disease_names)

    def _ages(self, rng: np.random.Generator) -> Ints:
        table = np.zeros((len(GROUPS), MAX_AGE + 1))
        for g, name in enumerate(GROUPS):
            if name in self.p.ages:
                table[g] = age_distribution(self.p.ages[name])
        return _pick_rows(rng, np.cumsum(table, axis=1), self.group)

    def _grants(self) -> tuple[Array, Array, Array]:
        ids = self.p.identities
        if ids is None or not ids.holdings:
            return np.zeros(0, np.int32), np.zeros(0, np.int16), np.zeros(0, np.int32)
        rng = self.rngs["identities"]
        eligible = np.isin(self.scheme, [SCHEMES.index(s) for s in ids.schemes if s in SCHEMES])
        holding = _pick(rng, [*range(len(ids.holdings)), -1], [*(h.share for h in ids.holdings), -1.0], self.n)
        holding[~eligible] = -1
        flat = np.array([IDENTITY_NAMES.index(i) for h in ids.holdings for i in h.identities], np.int16)
        lengths = np.array([len(h.identities) for h in ids.holdings])
        holders = np.flatnonzero(holding >= 0)
        person, position = _expand(holders, lengths[holding[holders]])
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        identity = flat[np.repeat(starts[holding[holders]], lengths[holding[holders]]) + position]
        dated = rng.random(len(person)) < ids.midyear_share
        since = np.where(dated, self.year_start + rng.integers(1, self.year_days, len(person)), NO_DATE)
        return person.astype(np.int32), identity, since.astype(np.int32)

    def _chronic(self) -> tuple[Array, Array]:
        rng, conds = self.rngs["chronic"], self.p.conditions
        curves = condition_curves(self.p)
        held = np.zeros((self.n, len(conds)), bool)
        index = {c.disease: i for i, c in enumerate(conds)}
        for i, cond in enumerate(conds):
            if cond.parent is None:
                held[:, i] = rng.random(self.n) < curves[i][self.age]
            else:
                parent = index[cond.parent]
                ratio = cond.prevalence / conds[parent].prevalence
                held[:, i] = held[:, parent] & (rng.random(self.n) < ratio)
        self.held = held
        person, which = np.nonzero(held)
        codes = np.array([self.diseases[c.disease] for c in conds], np.int32)
        return person.astype(np.int32), codes[which]

    # -- claims
    def _dates(self, rng: np.random.Generator, m: int) -> npt.NDArray[np.int32]:
        return (self.year_start + rng.integers(0, self.year_days, m)).astype(np.int32)

    def _priced(self, rng: np.random.Generator, level: Ints, costs: Sequence[Costs], which: Ints,
                multiplier: Floats | float, concentration: float | None = None) -> tuple[Ints, Ints]:
        """Lognormal total cost (whole fen) by cost table `which` and level, and the eligible cost: its share
        is Beta(concentration) or, without one (cheap, for millions of visits), triangular within ±spread."""
        cell = np.asarray(which, np.int64) * 3 + level - 1
        mean = np.array([c.mean for c in costs]).ravel()[cell] * multiplier
        sigma = np.array([c.sigma for c in costs]).ravel()[cell]
        yuan = np.exp(np.log(mean) - sigma ** 2 / 2 + sigma * rng.standard_normal(len(cell)))
        total = np.maximum(np.rint(yuan * 100), 1).astype(np.int64)
        share_mean = np.array([c.eligible for c in costs]).ravel()[cell]
        if concentration is not None:
            share = rng.beta(share_mean * concentration, (1 - share_mean) * concentration)
        else:
            spread = np.minimum(np.minimum(share_mean, 1 - share_mean), self.p.outpatient.eligible_spread)
            share = share_mean + spread * (rng.random(len(cell)) + rng.random(len(cell)) - 1)
        eligible = np.minimum(np.floor(total * share), total).astype(np.int64)
        return total, eligible

    def _inpatient(self) -> _Draft:
        rng, ip = self.rngs["inpatient"], self.p.inpatient
        rate = _group_values(ip.rate) * self._rate_norm()
        rr = np.prod(np.where(self.held, [c.admission_rr for c in self.p.conditions], 1.0), axis=1)
        frailty = rng.gamma(ip.dispersion, 1 / ip.dispersion, self.n)
        count = np.minimum(rng.poisson(rate[self.group] * rr * frailty), 50)
        owner = np.repeat(np.arange(self.n), count)
        m = len(owner)
        cls = self.cls[owner].astype(np.int64)
        costs = [ip.costs.get(c, _DUMMY) for c in CLASSES]
        level = _pick_rows(rng, np.cumsum([c.levels for c in costs], axis=1), cls) + 1
        tag, tag_mult = self._tags(rng, m)
        implant = self._implants(rng, level)
        person_cost = rng.lognormal(-ip.person_cost_sigma ** 2 / 2, ip.person_cost_sigma, self.n)[owner]
        mult = person_cost * tag_mult * np.where(implant, ip.implants.cost_multiplier if ip.implants else 1, 1)
        mult /= self._cost_norm()[level - 1]
        total, eligible = self._priced(rng, level, costs, cls, mult, ip.eligible_concentration)
        draft = _Draft(owner, np.full(m, _KIND["inpatient"]), level.astype(np.int8), total, eligible,
                       self._dates(rng, m))
        self._inpatient_flags(rng, draft, implant)
        self._inpatient_diseases(rng, draft, tag)
        return draft

    def _rate_norm(self) -> Floats:
        """1 / the mean admission relative risk of each group, so each group's rate hits its target."""
        curves = condition_curves(self.p)
        rr = np.array([c.admission_rr for c in self.p.conditions])
        by_age = np.prod(1 + curves * (rr - 1)[:, None], axis=0) if len(rr) else np.ones(MAX_AGE + 1)
        out = np.ones(len(GROUPS))
        for g, name in enumerate(GROUPS):
            if name in self.p.ages:
                out[g] = 1 / float(age_distribution(self.p.ages[name]) @ by_age)
        return out

    def _cost_norm(self) -> Floats:
        """Mean cost multiplier of tags and implants by level (so the level means hit their targets)."""
        ip = self.p.inpatient
        tags = 1 + sum(t.share * (t.cost_multiplier - 1) for t in ip.tags)
        implants = np.ones(3)
        if ip.implants is not None:
            implants[2] += ip.implants.share_at_level3 * (ip.implants.cost_multiplier - 1)
        return tags * implants

    def _tags(self, rng: np.random.Generator, m: int) -> tuple[Ints, Floats]:
        tags = self.p.inpatient.tags
        if not tags:
            return np.full(m, -1, np.int64), np.ones(m)
        tag = _pick(rng, [*range(len(tags)), -1], [*(t.share for t in tags), -1.0], m)
        mult = np.append([t.cost_multiplier for t in tags], 1.0)[tag]
        return tag, mult

    def _implants(self, rng: np.random.Generator, level: Ints) -> Array:
        implants = self.p.inpatient.implants
        if implants is None:
            return np.zeros(len(level), bool)
        return np.asarray(np.logical_and(level == 3, rng.random(len(level)) < implants.share_at_level3))

    def _inpatient_flags(self, rng: np.random.Generator, d: _Draft, implant: npt.NDArray[np.bool_]) -> None:
        ip, m = self.p.inpatient, len(d.owner)
        out_area = rng.random(m) < ip.out_of_area
        out_prov = out_area & (rng.random(m) < ip.out_of_province)
        direct = np.select([out_prov, out_area], [ip.direct_out_of_province, ip.direct_out_of_area],
                           ip.direct_in_area)
        tcm_inst = rng.random(m) < ip.tcm_institution
        pure = rng.random(m) < np.where(tcm_inst, ip.pure_tcm_at_tcm, ip.pure_tcm_elsewhere)
        d.flags = {
            "in_pooling_area": ~out_area, "in_province": ~out_prov,
            "referred": rng.random(m) < np.where(out_area, ip.referred_out_of_area, ip.referred_in_area),
            "emergency": rng.random(m) < ip.emergency, "direct_settlement": rng.random(m) < direct,
            "grassroots": (d.level == 1) & (rng.random(m) < ip.grassroots_at_level1),
            "tcm_institution": tcm_inst, "pure_tcm": pure}
        d.money["tcm_cost"] = self._tcm_cost(rng, d.eligible, tcm_inst, pure)
        d.money["material_over_limit"] = self._over_limit(rng, d, implant)
        d.designation = self._designation(rng, d, out_area)

    def _tcm_cost(self, rng: np.random.Generator, eligible: Ints, tcm_inst: Array, pure: Array) -> Ints:
        ip, m = self.p.inpatient, len(eligible)
        low = np.select([pure, tcm_inst], [ip.tcm_share_pure[0], ip.tcm_share_at_tcm[0]], ip.tcm_share_elsewhere[0])
        high = np.select([pure, tcm_inst], [ip.tcm_share_pure[1], ip.tcm_share_at_tcm[1]],
                         ip.tcm_share_elsewhere[1])
        any_tcm = pure | tcm_inst | (rng.random(m) < ip.tcm_any_elsewhere)
        share = np.where(any_tcm, rng.uniform(low, high), 0.0)
        return np.floor(eligible * share).astype(np.int64)

    def _over_limit(self, rng: np.random.Generator, d: _Draft, implant: Array) -> Ints:
        implants = self.p.inpatient.implants
        if implants is None:
            return np.zeros(len(d.owner), np.int64)
        fraction = rng.uniform(implants.over_limit[0], implants.over_limit[1], len(d.owner))
        return np.where(implant, np.floor((d.total - d.eligible) * fraction), 0).astype(np.int64)

    def _designation(self, rng: np.random.Generator, d: _Draft, out_area: Array) -> npt.NDArray[np.int8]:
        spec, m = self.p.inpatient.designation, len(d.owner)
        out = np.zeros(m, np.int8)
        if spec is None:
            return out
        codes = [self.regions[r] for r in spec.regions]
        served = np.isin(self.region[d.owner], codes) & ~out_area
        u = rng.random(m)
        county = served & np.isin(d.level, spec.county_levels) & (u < spec.county_share)
        city = served & np.isin(d.level, spec.city_levels) & (u < spec.city_share) & ~county
        out[county] = DESIGNATIONS.index("county_poverty")
        out[city] = DESIGNATIONS.index("city_poverty")
        return out

    def _inpatient_diseases(self, rng: np.random.Generator, d: _Draft, tag: Ints) -> None:
        ip, conds = self.p.inpatient, self.p.conditions
        tag_codes = np.array([self.diseases[t.disease] for t in ip.tags], np.int64)
        tagged = np.flatnonzero(tag >= 0)
        claims, codes = [tagged], [tag_codes[tag[tagged]] if len(tagged) else np.zeros(0, np.int64)]
        per_diem = np.array(ip.per_diem)[d.level - 1]
        for i, cond in enumerate(conds):
            if cond.admission_share <= 0:
                continue
            hit = np.flatnonzero(self.held[d.owner, i] & (rng.random(len(d.owner)) < cond.admission_share))
            claims.append(hit)
            codes.append(np.full(len(hit), self.diseases[cond.disease], np.int64))
            if cond.per_diem is not None:
                per_diem[hit] = cond.per_diem
        d.pair_claim, d.pair_code = np.concatenate(claims), np.concatenate(codes)
        noise = rng.lognormal(-ip.bed_days_sigma ** 2 / 2, ip.bed_days_sigma, len(d.owner))
        d.bed_days = np.clip(np.rint(d.total / 100 / per_diem * noise), 1, 365).astype(np.int32)

    def _outpatient(self) -> _Draft:
        rng, op = self.rngs["outpatient"], self.p.outpatient
        frailty = rng.gamma(op.dispersion, 1 / op.dispersion, self.n)
        count = np.minimum(rng.poisson(_group_values(op.visits)[self.group] * frailty), 365)
        owner = np.repeat(np.arange(self.n), count)
        cls = self.cls[owner].astype(np.int64)
        costs = [op.costs.get(c, _DUMMY) for c in CLASSES]
        level = _pick_rows(rng, np.cumsum([c.levels for c in costs], axis=1), cls) + 1
        total, eligible = self._priced(rng, level, costs, cls, 1.0)
        draft = _Draft(owner, np.full(len(owner), _KIND["outpatient"]), level.astype(np.int8), total, eligible,
                       self._dates(rng, len(owner)))
        self._outpatient_flags(rng, draft)
        return draft

    def _outpatient_flags(self, rng: np.random.Generator, d: _Draft) -> None:
        op, m = self.p.outpatient, len(d.owner)
        d.flags = {"grassroots": (d.level == 1) & (rng.random(m) < op.grassroots_at_level1),
                   "tcm_institution": rng.random(m) < op.tcm_institution,
                   "in_pooling_area": rng.random(m) >= op.out_of_area,
                   "emergency": rng.random(m) < op.emergency}

    def _condition_claims(self) -> _Draft:
        rng, conds = self.rngs["conditions"], self.p.conditions
        if not conds:
            return _empty_draft()
        holder, which = np.nonzero(self.held)
        count = np.minimum(rng.poisson(np.array([c.claims_per_year for c in conds])[which]), 366)
        owner, cond = np.repeat(holder, count), np.repeat(which, count)
        costs = [c.costs for c in conds]
        level = _pick_rows(rng, np.cumsum([c.levels for c in costs], axis=1), cond) + 1
        total, eligible = self._priced(rng, level, costs, cond, 1.0)
        co_share = np.array([c.chronic_outpatient_share for c in conds])[cond]
        kind = np.where(rng.random(len(owner)) < co_share, _KIND["chronic_outpatient"], _KIND["outpatient"])
        draft = _Draft(owner, kind.astype(np.int8), level.astype(np.int8), total, eligible,
                       self._dates(rng, len(owner)))
        self._outpatient_flags(rng, draft)
        codes = np.array([self.diseases[c.disease] for c in conds], np.int64)
        draft.pair_claim, draft.pair_code = np.arange(len(owner)), codes[cond]
        return draft

    def _episodes(self) -> list[_Draft]:
        out = []
        for spec, kind, name in ((self.p.maternity, "maternity", "maternity"),
                                 (self.p.high_value_drug, "high_value_drug", "drugs")):
            if spec is None:
                continue
            rng = self.rngs[name]
            at_risk = (self.age >= spec.min_age) & (self.age <= spec.max_age)
            if spec.female_only:
                at_risk &= self.sex == _F
            starts = np.flatnonzero(at_risk & (rng.random(self.n) < spec.share))
            count = 1 + np.minimum(rng.poisson(spec.claims_per_course - 1, len(starts)), 60)
            owner = np.repeat(starts, count)
            zeros = np.zeros(len(owner), np.int64)
            level = _pick_rows(rng, np.cumsum([spec.costs.levels], axis=1), zeros) + 1
            total, eligible = self._priced(rng, level, [spec.costs], zeros, 1.0)
            out.append(_Draft(owner, np.full(len(owner), _KIND[kind]), level.astype(np.int8), total, eligible,
                              self._dates(rng, len(owner))))
        return out


def _empty_draft() -> _Draft:
    empty = np.zeros(0, np.int64)
    return _Draft(empty, empty.astype(np.int8), empty.astype(np.int8), empty, empty, empty.astype(np.int32))


_DUMMY = Costs((1.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (0.5, 0.5, 0.5))  # for absent classes


# ---- merging drafts ----------------------------------------------------------------------------------------------
def _merge(drafts: Sequence[_Draft], first: int, width: int) -> Claims:
    """All drafts as one Claims, sorted by (person, date), with ids C<person>-<sequence>."""
    owner = np.concatenate([d.owner for d in drafts])
    day = np.concatenate([d.day for d in drafts])
    order = np.argsort(owner * 1024 + (day - day.min(initial=0)), kind="stable")
    sizes = np.array([len(d.owner) for d in drafts])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    owner = owner[order]
    seq = _sequence(owner)
    if len(seq) and seq.max() > MAX_CLAIM_SEQ:
        raise ValueError("a person has more than 9999 claims")
    position = np.empty(len(order), np.int64)
    position[order] = np.arange(len(order))
    pair_claim = np.concatenate([position[d.pair_claim + o] for d, o in zip(drafts, offsets, strict=True)])
    pair_code = np.concatenate([d.pair_code for d in drafts])
    pairs = np.lexsort((pair_code, pair_claim))
    people = digits("C", first + 1 + np.arange(owner.max(initial=-1) + 1), width)
    claim_ids = as_str(np.concatenate([people[owner], digits("-", seq + 1, 4)], axis=1))

    def cat(get: str, dtype: type, default: object) -> Any:  # Any: also spread into Claims(**…)
        parts = [_field(d, get, default) for d in drafts]
        return np.concatenate(parts).astype(dtype)[order]

    return Claims(
        claim_id=claim_ids, person=owner.astype(np.int32), day=cat("day", np.int32, 0),
        kind=cat("kind", np.int8, 0), level=cat("level", np.int8, 1),
        total_cost=cat("total", np.int64, 0), eligible_cost=cat("eligible", np.int64, 0),
        tcm_cost=cat("money.tcm_cost", np.int64, 0),
        material_over_limit=cat("money.material_over_limit", np.int64, 0),
        bed_days=cat("bed_days", np.int32, 0),
        **{f: cat(f"flags.{f}", bool, v) for f, v in _FLAG_DEFAULTS.items()},
        designation=cat("designation", np.int8, 0),
        disease_claim=pair_claim[pairs].astype(np.int32), disease_code=pair_code[pairs].astype(np.int32))


def _field(d: _Draft, name: str, default: object) -> Array:
    if name.startswith("flags."):
        value: object = d.flags.get(name[6:])
    elif name.startswith("money."):
        value = d.money.get(name[6:])
    else:
        value = getattr(d, name)
    return np.full(len(d.owner), default) if value is None else np.asarray(value)


def _sequence(sorted_owner: Ints) -> Ints:
    """0, 1, 2 … within each run of equal owners."""
    if not len(sorted_owner):
        return np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_owner[1:] != sorted_owner[:-1]])
    lengths = np.diff(np.r_[starts, len(sorted_owner)])
    return np.arange(len(sorted_owner)) - np.repeat(starts, lengths)


# ---- small vectorised helpers -----------------------------------------------------------------------------------
def format_ids(parts: Sequence[tuple[str, Ints, int]]) -> Array:
    """Concatenated (prefix + zero-padded number) parts, as a NumPy str array, with no loop over rows."""
    return as_str(np.concatenate([digits(prefix, numbers, width) for prefix, numbers, width in parts], axis=1))


def as_str(matrix: npt.NDArray[np.uint32]) -> Array:
    """A matrix of code points (one row per string, equal widths) viewed as a NumPy str array."""
    matrix = np.ascontiguousarray(matrix, dtype="<u4")
    return matrix.view(f"<U{matrix.shape[1]}").reshape(len(matrix))


def digits(prefix: str, numbers: Ints, width: int) -> npt.NDArray[np.uint32]:
    """Code points of prefix + the numbers zero-padded to `width` digits, one row per number."""
    numbers = np.asarray(numbers, np.int64)
    out = np.empty((len(numbers), len(prefix) + width), np.uint32)
    out[:, :len(prefix)] = [ord(ch) for ch in prefix]
    rest = numbers.copy()
    for j in range(width - 1, -1, -1):
        out[:, len(prefix) + j] = 48 + rest % 10
        rest //= 10
    if len(rest) and (rest.max() > 0 or numbers.min() < 0):
        raise ValueError(f"a number does not fit in {width} digits")
    return out


def _pick(rng: np.random.Generator, values: Sequence[int], weights: Sequence[float], n: int) -> Ints:
    """n draws of `values` with `weights`; a final weight of -1 takes what the others leave of 1."""
    w = np.array(weights, float)
    if len(w) and w[-1] < 0:
        w[-1] = max(0.0, 1 - w[:-1].sum())
    cum = np.cumsum(w) / w.sum()
    index = np.minimum(np.searchsorted(cum, rng.random(n), side="right"), len(w) - 1)
    return np.asarray(values, np.int64)[index]


def _pick_rows(rng: np.random.Generator, cum: Floats, rows: Array) -> Ints:
    """One draw per element from the cumulative weights cum[rows[i]] (each row ending at 1): an index."""
    cum = np.asarray(cum, float)
    last = cum[:, -1:]
    cum = np.divide(cum, last, out=np.ones_like(cum), where=last > 0)
    u = rng.random(len(rows))
    index = np.zeros(len(rows), np.int64)
    single = cum.shape[0] == 1
    for j in range(cum.shape[1] - 1):
        index += u >= (cum[0, j] if single else np.take(cum[:, j], rows))
    return index


def _group_values(mapping: Mapping[str, float]) -> Floats:
    return np.array([mapping.get(g, 0.0) for g in GROUPS])


def _expand(rows: Ints, counts: Ints) -> tuple[Ints, Ints]:
    """Each row repeated counts times, and the position 0 … count-1 of each repeat."""
    repeated = np.repeat(rows, counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return repeated, np.arange(len(repeated)) - np.repeat(starts, counts)


# ---- chunks: slicing and concatenating Columns ------------------------------------------------------------------
def slice_persons(cols: Columns, low: int, high: int) -> Columns:
    """Persons low … high-1 with their claims (claims, grants and chronic rows must be person-sorted)."""
    p, c = cols.persons, cols.claims
    if low == 0 and high == p.n:
        return cols
    g0, g1 = np.searchsorted(p.grant_person, [low, high])
    h0, h1 = np.searchsorted(p.chronic_person, [low, high])
    c0, c1 = np.searchsorted(c.person, [low, high])
    d0, d1 = np.searchsorted(c.disease_claim, [c0, c1])
    persons = attrs.evolve(
        p, **{f: getattr(p, f)[low:high] for f in (*_PERSON_ROWS, "region") if getattr(p, f) is not None},
        grant_person=p.grant_person[g0:g1] - low, grant_identity=p.grant_identity[g0:g1],
        grant_since=p.grant_since[g0:g1], chronic_person=p.chronic_person[h0:h1] - low,
        chronic_disease=p.chronic_disease[h0:h1])
    claims = attrs.evolve(
        c, **{f: getattr(c, f)[c0:c1] for f in _CLAIM_ROWS if getattr(c, f) is not None},
        person=c.person[c0:c1] - low, disease_claim=c.disease_claim[d0:d1] - c0,
        disease_code=c.disease_code[d0:d1])
    return Columns(persons, claims, cols.identity_names, cols.disease_names)


_PERSON_ROWS = ("person_id", "scheme", "retired", "age", "sex", "resettled")
_CLAIM_ROWS = ("claim_id", "day", "kind", "level", "total_cost", "eligible_cost", "tcm_cost", "material_over_limit",
               "bed_days", "grassroots", "tcm_institution", "referred", "in_province", "in_pooling_area",
               "direct_settlement", "emergency", "pure_tcm", "designation")


def concat(parts: Sequence[Columns]) -> Columns:
    """One Columns of several (persons one after the other); differing name tables are merged."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        raise ValueError("nothing to concatenate")
    identities = _union([c.identity_names for c in parts])
    diseases = _union([c.disease_names for c in parts])
    regions = _union([c.persons.region_names for c in parts])
    person_base = np.cumsum([0, *(c.persons.n for c in parts)])
    claim_base = np.cumsum([0, *(c.claims.m for c in parts)])
    ps, cs = [c.persons for c in parts], [c.claims for c in parts]
    persons = Persons(
        **{f: _cat_rows(ps, f) for f in _PERSON_ROWS},
        region=np.concatenate([_recode(p.region, p.region_names, regions) for p in ps]).astype(np.int32),
        region_names=regions,
        grant_person=_cat_shifted([p.grant_person for p in ps], person_base, np.int32),
        grant_identity=np.concatenate([_recode(c.persons.grant_identity, c.identity_names, identities)
                                       for c in parts]).astype(np.int16),
        grant_since=np.concatenate([p.grant_since for p in ps]),
        chronic_person=_cat_shifted([p.chronic_person for p in ps], person_base, np.int32),
        chronic_disease=np.concatenate([_recode(c.persons.chronic_disease, c.disease_names, diseases)
                                        for c in parts]).astype(np.int32))
    claims = Claims(
        **{f: _cat_rows(cs, f) for f in _CLAIM_ROWS},
        person=_cat_shifted([c.person for c in cs], person_base, np.int32),
        disease_claim=_cat_shifted([c.disease_claim for c in cs], claim_base, np.int32),
        disease_code=np.concatenate([_recode(c.claims.disease_code, c.disease_names, diseases)
                                     for c in parts]).astype(np.int32))
    return Columns(persons, claims, identities, diseases)


def _cat_rows(rows: Sequence[object], field: str) -> Any:  # Any: spread into Persons(**…) / Claims(**…)
    arrays = [getattr(r, field) for r in rows]
    if any(a is None for a in arrays):
        raise ValueError(f"cannot concatenate chunks without {field}s")
    return np.concatenate(arrays)


def _cat_shifted(arrays: Sequence[Array], bases: Ints, dtype: type) -> Array:
    return np.concatenate([a.astype(np.int64) + b for a, b in zip(arrays, bases, strict=False)]).astype(dtype)


def _union(tables: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for t in tables for name in t))


def _recode(codes: Array, old: tuple[str, ...], new: tuple[str, ...]) -> Array:
    if old == new[:len(old)]:
        return codes
    table = np.array([new.index(name) for name in old] + [-1], np.int64)
    return table[codes]  # code -1 (none) maps to the last entry, -1


def rechunk(chunks: Iterable[Columns], size: int) -> Iterator[Columns]:
    """The same persons and claims regrouped into chunks of `size` persons (the last may be smaller)."""
    pending: list[Columns] = []
    count = 0
    for chunk in chunks:
        pending.append(chunk)
        count += chunk.persons.n
        while count >= size:
            merged = concat(pending)
            yield slice_persons(merged, 0, size)
            rest = slice_persons(merged, size, merged.persons.n)
            pending, count = ([rest], rest.persons.n) if rest.persons.n else ([], 0)
    if count:
        yield concat(pending)


# ---- measuring a population (`polc population describe`) --------------------------------------------------------
_INPATIENT, _OUTPATIENT = KINDS.index("inpatient"), KINDS.index("outpatient")
_CHRONIC_KINDS = [KINDS.index("outpatient"), KINDS.index("chronic_outpatient")]
_LEVEL_NAMES = (1, 2, 3)
_INPATIENT_FLAGS = {"out_of_area": "in_pooling_area", "out_of_province": "in_province", "referred": "referred",
                    "emergency": "emergency", "direct_settlement": "direct_settlement",
                    "tcm_institution": "tcm_institution", "pure_tcm": "pure_tcm"}


@attrs.define
class Measure:
    """Statistics of a population, added up chunk by chunk (bounded memory), keyed as profile.expectations."""

    profile: Profile | None = None
    ratios: dict[str, list[float]] = attrs.field(factory=dict)  # key -> [numerator, denominator]
    squares: dict[str, float] = attrs.field(factory=dict)  # key -> sum of squares, for means
    patient_costs: list[Floats] = attrs.field(factory=list)

    def add(self, cols: Columns) -> None:
        view = _View(cols)
        self._persons(view)
        self._identities(view)
        self._inpatient(view)
        self._outpatient(view)
        self._chronic(view)
        self._episodes(view)
        cost = np.bincount(view.c.person, weights=view.c.total_cost / 100, minlength=view.n)
        self.patient_costs.append(cost[np.bincount(view.c.person, minlength=view.n) > 0].astype(np.float64))

    def counts(self) -> dict[str, float]:
        """The denominator of each statistic (persons, admissions, holders …)."""
        return {k: d for k, (_n, d) in self.ratios.items()}

    def errors(self) -> dict[str, float]:
        """The empirical standard error of each mean (cost per admission, per visit; mean age)."""
        out = {}
        for key, square in self.squares.items():
            total, count = self.ratios[key]
            if count > 1:
                variance = max(0.0, (square - total * total / count) / (count - 1))
                out[key] = (variance / count) ** 0.5
        return out

    def values(self) -> dict[str, float]:
        out = {k: n / d for k, (n, d) in self.ratios.items() if d > 0}
        costs = np.sort(np.concatenate(self.patient_costs or [np.zeros(0)]))[::-1]
        if len(costs) and costs.sum() > 0:
            out["top5_cost_share"] = float(costs[:max(1, round(0.05 * len(costs)))].sum() / costs.sum())
        return out

    def _ratio(self, key: str, numerator: float, denominator: float) -> None:
        pair = self.ratios.setdefault(key, [0.0, 0.0])
        pair[0] += float(numerator)
        pair[1] += float(denominator)

    def _count(self, key: str, value: float) -> None:
        self.ratios.setdefault(key, [0.0, 1.0])[0] += float(value)

    def _mean(self, key: str, values: Array) -> None:
        self._ratio(key, values.sum(), len(values))
        self.squares[key] = self.squares.get(key, 0.0) + float(np.square(values.astype(np.float64)).sum())

    def _persons(self, v: _View) -> None:
        p = v.p
        self._count("persons", v.n)
        self._count("claims", v.m)
        for i, scheme in enumerate(SCHEMES):
            in_scheme = p.scheme == i
            self._ratio(f"scheme.{scheme}", in_scheme.sum(), v.n)
            if scheme != "resident":
                self._ratio(f"retired.{scheme}", (in_scheme & p.retired).sum(), in_scheme.sum())
        for g, group in enumerate(GROUPS):
            mine = v.group == g
            self._mean(f"age.{group}", p.age[mine & (p.age >= 0)])
            self._ratio(f"female.{group}", (mine & (p.sex == _F)).sum(), mine.sum())
            self._ratio(f"resettled.{group}", (mine & p.resettled).sum(), mine.sum())
        counts = np.bincount(p.region[p.region >= 0], minlength=len(v.cols.persons.region_names))
        for name, count in zip(v.cols.persons.region_names, counts, strict=True):
            self._ratio(f"region.{name}", count, v.n)

    def _identities(self, v: _View) -> None:
        p, ids = v.p, self.profile.identities if self.profile else None
        eligible = np.isin(p.scheme, [SCHEMES.index(s) for s in ids.schemes]) if ids else np.ones(v.n, bool)
        held = np.bincount(p.grant_person, minlength=v.n)
        for i, name in enumerate(v.cols.identity_names):
            self._ratio(f"identity.{name}", (p.grant_identity == i).sum(), eligible.sum())
        self._ratio("identity.any", (held > 0).sum(), eligible.sum())
        self._ratio("identity.multi", (held > 1).sum(), (held > 0).sum())
        self._ratio("identity.midyear", (p.grant_since != NO_DATE).sum(), len(p.grant_since))

    def _inpatient(self, v: _View) -> None:
        c, ip = v.c, v.c.kind == _INPATIENT
        for g, group in enumerate(GROUPS):
            self._ratio(f"admissions.{group}", (ip & (v.claim_group == g)).sum(), (v.group == g).sum())
        for k, cls in enumerate(CLASSES):
            mine = ip & (v.claim_class == k)
            for level in _LEVEL_NAMES:
                at = mine & (c.level == level)
                self._ratio(f"admission_level.{cls}.{level}", at.sum(), mine.sum())
                self._mean(f"admission_cost.{cls}.{level}", c.total_cost[at] / 100)
                self._ratio(f"eligible_share.{cls}.{level}", c.eligible_cost[at].sum(), c.total_cost[at].sum())
        for key, field in _INPATIENT_FLAGS.items():
            values = getattr(c, field)[ip]
            self._ratio(f"inpatient.{key}", (~values if key.startswith("out_of") else values).sum(), ip.sum())
        self._ratio("inpatient.grassroots_level1", (ip & c.grassroots & (c.level == 1)).sum(),
                    (ip & (c.level == 1)).sum())
        level3 = ip & (c.level == 3)
        self._ratio("inpatient.implants", (level3 & (c.material_over_limit > 0)).sum(), level3.sum())
        self._ratio("below_10000_share", (ip & (c.total_cost < 1_000_000)).sum(), ip.sum())
        self._ratio("bed_days.mean", c.bed_days[ip].sum(), ip.sum())
        self._designations(v, ip)
        for code, name in enumerate(v.cols.disease_names):
            self._ratio(f"inpatient.disease.{name}", ip[v.claims_with(code)].sum(), ip.sum())

    def _designations(self, v: _View, ip: Array) -> None:
        spec = self.profile.inpatient.designation if self.profile else None
        if spec is None:
            return
        c = v.c
        codes = [i for i, r in enumerate(v.cols.persons.region_names) if r in spec.regions]
        served = ip & c.in_pooling_area & np.isin(v.p.region[c.person], codes)
        for name, levels in (("county_poverty", spec.county_levels), ("city_poverty", spec.city_levels)):
            eligible = served & np.isin(c.level, levels)
            hit = eligible & (c.designation == DESIGNATIONS.index(name))
            self._ratio(f"inpatient.{name}", hit.sum(), eligible.sum())

    def _outpatient(self, v: _View) -> None:
        c = v.c
        ordinary = (c.kind == _OUTPATIENT) & (np.bincount(c.disease_claim, minlength=v.m) == 0)
        for g, group in enumerate(GROUPS):
            self._ratio(f"visits.{group}", (ordinary & (v.claim_group == g)).sum(), (v.group == g).sum())
        for k, cls in enumerate(CLASSES):
            for level in _LEVEL_NAMES:
                at = ordinary & (v.claim_class == k) & (c.level == level)
                self._mean(f"visit_cost.{cls}.{level}", c.total_cost[at] / 100)

    def _chronic(self, v: _View) -> None:
        p, c = v.p, v.c
        condition_kind = np.isin(c.kind, _CHRONIC_KINDS)
        for code, name in enumerate(v.cols.disease_names):
            holders = (p.chronic_disease == code).sum()
            self._ratio(f"chronic.{name}", holders, v.n)
            self._ratio(f"chronic_claims.{name}", condition_kind[v.claims_with(code)].sum(), holders)

    def _episodes(self, v: _View) -> None:
        p, c = v.p, v.c
        for name in ("maternity", "high_value_drug"):
            spec = getattr(self.profile, name) if self.profile else None
            low, high, female = (spec.min_age, spec.max_age, spec.female_only) if spec else (0, MAX_AGE, False)
            at_risk = (p.age >= low) & (p.age <= high) & ((p.sex == _F) if female else True)
            claims = np.bincount(c.person[c.kind == KINDS.index(name)], minlength=v.n)
            self._ratio(f"{name}.share", (at_risk & (claims > 0)).sum(), at_risk.sum())
            self._ratio(f"{name}.claims", claims.sum(), (claims > 0).sum())


class _Fields:
    """The arrays of Persons or Claims typed NDArray[Any] (no copy), so that mypy allows arithmetic on them."""

    def __init__(self, record: Persons | Claims) -> None:
        self._record = record

    def __getattr__(self, name: str) -> Array:
        return np.asarray(getattr(self._record, name))


class _View:
    """A chunk with the derived per-person and per-claim groups the statistics need."""

    def __init__(self, cols: Columns) -> None:
        self.cols, self.p, self.c = cols, _Fields(cols.persons), _Fields(cols.claims)
        self.n, self.m = cols.persons.n, cols.claims.m
        self.group = np.where(self.p.scheme == _RESIDENT, 0, np.where(self.p.retired, 2, 1))
        self.claim_group = self.group[self.c.person]
        self.claim_class = (self.claim_group > 0).astype(np.int8)
        order = np.argsort(self.c.disease_code, kind="stable")
        self._by_code = (self.c.disease_code[order], self.c.disease_claim[order])

    def claims_with(self, code: int) -> Array:
        """Rows of the claims carrying disease `code`."""
        codes, claims = self._by_code
        low, high = np.searchsorted(codes, [code, code + 1])
        return claims[low:high]


@attrs.frozen
class Row:
    key: str
    label: str
    target: str
    realised: str
    status: str  # "ok", "off" or "" (no target)
    value: float | None


def measure(chunks: Iterable[Columns], profile: Profile | None = None) -> Measure:
    """The realised statistics of a population (streamed chunk by chunk)."""
    tally = Measure(profile)
    for chunk in chunks:
        tally.add(chunk)
    return tally


def describe(chunks: Iterable[Columns], profile: Profile | None = None) -> list[Row]:
    """Realised statistics beside the profile's targets, with ok / off against its tolerances."""
    tally = measure(chunks, profile)
    values, counts, errors = tally.values(), tally.counts(), tally.errors()
    rows = [Row(k, label, "", _fmt(values.get(k), kind), "", values.get(k)) for k, label, kind in _INFO]
    if profile is None:
        return rows + [Row(k, k, "", _fmt(v, "rate"), "", v) for k, v in sorted(values.items())]
    for e in expectations(profile):
        realised = values.get(e.key)
        target = f">= {_fmt(e.minimum, e.kind)}" if e.minimum is not None else _fmt(e.value, e.kind)
        status = "" if realised is None else ("ok" if e.ok(realised, counts.get(e.key), errors.get(e.key)) else "off")
        rows.append(Row(e.key, e.label, target, _fmt(realised, e.kind), status, realised))
    return rows


_INFO = (("persons", "persons", "count"), ("claims", "claims", "count"),
         ("bed_days.mean", "mean bed days per admission", "age"))


def _fmt(value: float | None, kind: str) -> str:
    if value is None:
        return "-"
    if kind in ("share", "subshare", "eligible", "concentration"):
        return f"{value:.2%}"
    if kind == "prevalence":
        return f"{value:.3%}"
    formats = {"count": "{:,.0f}", "cost": "{:,.0f}", "age": "{:.1f}", "rate": "{:.3f}", "subrate": "{:.3f}"}
    return formats.get(kind, "{:.4g}").format(value)


def render(rows: Sequence[Row], title: str) -> str:
    """The rows as an aligned text table (East Asian wide characters count twice)."""
    header = ("statistic", "target", "realised", "check")
    table = [header, *((r.label, r.target, r.realised, r.status) for r in rows)]
    widths = [max(_width(line[i]) for line in table) for i in range(4)]
    lines = [title, ""]
    for line in table:
        cells = [_pad(line[0], widths[0], left=True), *(_pad(line[i], widths[i]) for i in (1, 2)), line[3]]
        lines.append("  ".join(cells).rstrip())
    ok, off = sum(r.status == "ok" for r in rows), sum(r.status == "off" for r in rows)
    lines += ["", f"{ok + off} targets: {ok} ok, {off} off"]
    return "\n".join(lines) + "\n"


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int, left: bool = False) -> str:
    fill = " " * (width - _width(text))
    return text + fill if left else fill + text
