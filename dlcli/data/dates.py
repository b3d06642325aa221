"""`{builtin: dates, n}`: the course's date-translation pairs, generated from the seed.

The course (nmt_utils.py) draws a date between 1970-01-01 and the day it ran (Faker's
`date_object`), writes it in one of 24 Babel formats (en_US), lower-cases it and drops the
commas; the target is the ISO date. This module writes the same formats by hand (no Faker,
no Babel) over 1970-01-01 .. 2021-02-24, the range of the course's dates_10000.tsv:

    short 'M/d/yy' 9/10/70 · medium 'MMM d, y' sep 10 1970 · long 'MMMM d, y' september 10 1970
    full 'EEEE, MMMM d, y' (10 of the 24) thursday september 10 1970 · 'd MMM YYY' 10 sep 1970
    'd MMMM YYY' (twice) · 'dd MMM YYY' · 'd MMM, YYY' · 'd MMMM, YYY' · 'dd, MMM YYY'
    'd MM YY' 10 09 70 · 'MMMM d YYY' · 'MMMM d, YYY' · 'dd.MM.YY' 10.09.70

(Babel's YYY is the week-based year; the calendar year is used, as the target is the
calendar date.) Vocabularies are the course's: the 35 characters these formats use plus
`<unk>` and `<pad>` (37), and '-' with the ten digits for the target (11).
"""

from __future__ import annotations

import datetime as _dt

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
FIRST, LAST = _dt.date(1970, 1, 1), _dt.date(2021, 2, 24)

HUMAN_CHARS = " ./0123456789abcdefghijlmnoprstuvwy"  # sorted; no k, q, x, z in any format
HUMAN_VOCAB = list(HUMAN_CHARS) + ["<unk>", "<pad>"]  # the course's 37, in its order
MACHINE_VOCAB = list("-0123456789")  # the course's 11
TX, TY = 30, 10


def _mon(d):
    return MONTHS[d.month - 1][:3]


def _month(d):
    return MONTHS[d.month - 1]


FORMATS = (
    lambda d: f"{d.month}/{d.day}/{d.year % 100:02d}",                      # short
    lambda d: f"{_mon(d)} {d.day} {d.year}",                                # medium
    lambda d: f"{_month(d)} {d.day} {d.year}",                              # long
    *[lambda d: f"{DAYS[d.weekday()]} {_month(d)} {d.day} {d.year}"] * 10,  # full
    lambda d: f"{d.day} {_mon(d)} {d.year}",                                # d MMM YYY
    lambda d: f"{d.day} {_month(d)} {d.year}",                              # d MMMM YYY
    lambda d: f"{d.day:02d} {_mon(d)} {d.year}",                            # dd MMM YYY
    lambda d: f"{d.day} {_mon(d)} {d.year}",                                # d MMM, YYY
    lambda d: f"{d.day} {_month(d)} {d.year}",                              # d MMMM, YYY
    lambda d: f"{d.day:02d} {_mon(d)} {d.year}",                            # dd, MMM YYY
    lambda d: f"{d.day} {d.month:02d} {d.year % 100:02d}",                  # d MM YY
    lambda d: f"{d.day} {_month(d)} {d.year}",                              # d MMMM YYY
    lambda d: f"{_month(d)} {d.day} {d.year}",                              # MMMM d YYY
    lambda d: f"{_month(d)} {d.day} {d.year}",                              # MMMM d, YYY
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year % 100:02d}",              # dd.MM.YY
)


def date_pairs(rng, n: int) -> list[tuple[str, str]]:
    """n (human, machine) pairs, e.g. ("tuesday june 5 2018", "2018-06-05"), from `rng`."""
    span = (LAST - FIRST).days + 1
    days = rng.integers(0, span, size=n)
    formats = rng.integers(0, len(FORMATS), size=n)
    pairs = []
    for day, f in zip(days.tolist(), formats.tolist()):
        d = FIRST + _dt.timedelta(days=day)
        pairs.append((FORMATS[f](d), d.isoformat()))
    return pairs
