"""Comparison: the same population under a baseline and a policy — who gains, who loses, by how much."""

from __future__ import annotations

import attrs
import numpy as np
import numpy.typing as npt

from policy_lang import interp
from policy_lang.columns import Columns
from policy_lang.vector import VectorResult, considered_years
from simulator.metrics import group_name, person_groups

TOP = 10


@attrs.define
class Movers:
    """People whose out-of-pocket cost falls (winners) or rises (losers), and by how much in total."""

    winners: int = 0
    gained: int = 0  # fen less out of pocket, summed
    losers: int = 0
    lost: int = 0  # fen more out of pocket, summed

    def add(self, other: Movers) -> None:
        self.winners += other.winners
        self.gained += other.gained
        self.losers += other.losers
        self.lost += other.lost


@attrs.frozen
class Change:
    person_id: str
    group: str
    old_out_of_pocket: int
    new_out_of_pocket: int

    @property
    def delta(self) -> int:
        return self.new_out_of_pocket - self.old_out_of_pocket


@attrs.define
class Comparison:
    total: Movers = attrs.field(factory=Movers)
    by_group: dict[str, Movers] = attrs.field(factory=dict)
    biggest: list[Change] = attrs.field(factory=list)

    def merge(self, other: Comparison) -> None:
        self.total.add(other.total)
        for g, m in other.by_group.items():
            self.by_group.setdefault(g, Movers()).add(m)
        self.biggest = _top([*self.biggest, *other.biggest])


def _top(changes: list[Change]) -> list[Change]:
    return sorted(changes, key=lambda c: (-abs(c.delta), c.person_id))[:TOP]


def compare_chunk(cols: Columns, new: VectorResult, old: VectorResult, year: int,
                  options: interp.Options = interp.Options()) -> Comparison:
    """Person-years of `year` in either result (rows are sparse: one absent from a result is all zeros).

    `options` are the evaluation's: they fix whether the run considers `year` at all, and so whether every
    group of the chunk is listed (with or without movers) as it was with one row per person-year."""
    person, new_oop, old_oop = _aligned(new, old, year)
    delta = new_oop - old_oop
    everyone = person_groups(cols)
    groups = everyone[person]
    considered = bool(np.isin(year, considered_years(cols, options)))
    out = Comparison()
    out.total = _movers(delta)
    for code in np.unique(everyone if considered else groups):
        sel = groups == code
        out.by_group[group_name(int(code))] = _movers(delta[sel])
    out.biggest = _biggest(cols, person, groups, old_oop, new_oop, delta)
    return out


def _aligned(new: VectorResult, old: VectorResult, year: int) -> tuple[npt.NDArray[np.int64], ...]:
    """The persons with a row of `year` in either result (ascending) and their out-of-pocket in each."""
    in_new, in_old = new.py_year == year, old.py_year == year
    new_person, old_person = new.py_person[in_new], old.py_person[in_old]
    person = np.union1d(new_person, old_person).astype(np.int64)
    new_oop, old_oop = np.zeros(len(person), np.int64), np.zeros(len(person), np.int64)
    new_oop[np.searchsorted(person, new_person)] = new.py_out_of_pocket[in_new]
    old_oop[np.searchsorted(person, old_person)] = old.py_out_of_pocket[in_old]
    return person, new_oop, old_oop


def _movers(delta: npt.NDArray[np.int64]) -> Movers:
    win, lose = delta < 0, delta > 0
    return Movers(int(win.sum()), int(-delta[win].sum()), int(lose.sum()), int(delta[lose].sum()))


def _biggest(cols: Columns, person: npt.NDArray[np.int64], groups: npt.NDArray[np.int16],
             old: npt.NDArray[np.int64], new: npt.NDArray[np.int64],
             delta: npt.NDArray[np.int64]) -> list[Change]:
    if len(delta) == 0:
        return []
    order = np.argsort(-np.abs(delta), kind="stable")[: TOP * 4]
    ids = cols.persons.ids()
    changes = [Change(str(ids[person[i]]), group_name(int(groups[i])), int(old[i]), int(new[i]))
               for i in order if delta[i] != 0]
    return _top(changes)
