"""``data=dates``: human-written dates -> ISO ``YYYY-MM-DD``, pairs generated from a seed, no download.

Every day from :data:`FIRST_DAY` 1950-01-01 to :data:`LAST_DAY` 2049-12-31 (36,525 days) can be
written in each of the :data:`FORMATS` below; a pair is one day in one format, its target the
day's ISO date. Two-digit years are unambiguous in this range: ``50``..``99`` are 1950..1999,
``00``..``49`` are 2000..2049. Numeric dates are day first (``dd/mm/yy``, as in Europe), so
``03/04/21`` is the 3rd of April.

==================  ==============================
``ordinal_of``      3rd of March 2021
``weekday``         Wednesday, 3 March 2021
``d_mon``           3 Mar 2021
``wkd_d_mon``       Wed 3 Mar 2021
``month_d``         March 3, 2021
``month_ordinal``   March 3rd, 2021
``dd/mm/yy``        03/03/21
``d/m/yyyy``        3/3/2021
``yyyy.mm.dd``      2021.03.03
``dd-mon-yyyy``     03-Mar-2021
``french``          3 mars 2021 (the 1st: 1er mars 2021)
``french_weekday``  mercredi 3 mars 2021
``german``          3. März 2021
``german_weekday``  Mittwoch, 3. März 2021
``spanish``         3 de marzo de 2021
==================  ==============================

The longest rendering has 30 characters (``Donnerstag, 30. September 2021``), every target 10.

Train and validation are disjoint by day: the days are permuted with the seed and the last
``val_fraction`` of them are validation days, so a day's every rendering is in one split only and
the model is scored on dates it never saw in any form. Which days are validation days depends on
the seed and ``val_fraction`` only (not on ``num_pairs``); each split's pairs are then drawn
without repetition from its days x formats.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np

from attnlab.errors import ConfigError

FIRST_DAY = dt.date(1950, 1, 1)
LAST_DAY = dt.date(2049, 12, 31)  # two-digit years: 50..99 -> 19xx, 00..49 -> 20xx
NUM_DAYS = (LAST_DAY - FIRST_DAY).days + 1  # 36,525

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")  # date.weekday() order
FRENCH_MONTHS = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)
FRENCH_WEEKDAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
GERMAN_MONTHS = (
    "Januar",
    "Februar",
    "März",
    "April",
    "Mai",
    "Juni",
    "Juli",
    "August",
    "September",
    "Oktober",
    "November",
    "Dezember",
)
GERMAN_WEEKDAYS = ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag")
SPANISH_MONTHS = (
    "enero",
    "febrero",
    "marzo",
    "abril",
    "mayo",
    "junio",
    "julio",
    "agosto",
    "septiembre",
    "octubre",
    "noviembre",
    "diciembre",
)


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st, 22nd, 23rd, ..., 31st."""
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _month(d: dt.date) -> str:
    return MONTHS[d.month - 1]


def _weekday(d: dt.date) -> str:
    return WEEKDAYS[d.weekday()]


def _french_day(d: dt.date) -> str:
    return "1er" if d.day == 1 else str(d.day)


FORMATS: dict[str, Callable[[dt.date], str]] = {
    "ordinal_of": lambda d: f"{ordinal(d.day)} of {_month(d)} {d.year}",
    "weekday": lambda d: f"{_weekday(d)}, {d.day} {_month(d)} {d.year}",
    "d_mon": lambda d: f"{d.day} {_month(d)[:3]} {d.year}",
    "wkd_d_mon": lambda d: f"{_weekday(d)[:3]} {d.day} {_month(d)[:3]} {d.year}",
    "month_d": lambda d: f"{_month(d)} {d.day}, {d.year}",
    "month_ordinal": lambda d: f"{_month(d)} {ordinal(d.day)}, {d.year}",
    "dd/mm/yy": lambda d: f"{d.day:02d}/{d.month:02d}/{d.year % 100:02d}",
    "d/m/yyyy": lambda d: f"{d.day}/{d.month}/{d.year}",
    "yyyy.mm.dd": lambda d: f"{d.year}.{d.month:02d}.{d.day:02d}",
    "dd-mon-yyyy": lambda d: f"{d.day:02d}-{_month(d)[:3]}-{d.year}",
    "french": lambda d: f"{_french_day(d)} {FRENCH_MONTHS[d.month - 1]} {d.year}",
    "french_weekday": lambda d: (
        f"{FRENCH_WEEKDAYS[d.weekday()]} {_french_day(d)} {FRENCH_MONTHS[d.month - 1]} {d.year}"
    ),
    "german": lambda d: f"{d.day}. {GERMAN_MONTHS[d.month - 1]} {d.year}",
    "german_weekday": lambda d: f"{GERMAN_WEEKDAYS[d.weekday()]}, {d.day}. {GERMAN_MONTHS[d.month - 1]} {d.year}",
    "spanish": lambda d: f"{d.day} de {SPANISH_MONTHS[d.month - 1]} de {d.year}",
}
FORMAT_NAMES = tuple(FORMATS)


def render(day: dt.date, fmt: str) -> str:
    """``day`` written in the format named ``fmt`` (one of :data:`FORMAT_NAMES`)."""
    return FORMATS[fmt](day)


def split_days(val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The day numbers (0 = :data:`FIRST_DAY`) of the train and the validation split, each sorted."""
    days = np.random.default_rng((seed, 0)).permutation(NUM_DAYS)  # (NUM_DAYS,)
    n_val = int(round(NUM_DAYS * val_fraction))
    return np.sort(days[: NUM_DAYS - n_val]), np.sort(days[NUM_DAYS - n_val :])


def date_pairs(num_pairs: int, val_fraction: float, seed: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(train, val)`` lists of ``(written date, ISO date)``: ``round(num_pairs * val_fraction)``
    validation pairs, the rest training pairs, no pair twice, the splits disjoint by day; the
    same for the same arguments everywhere."""
    train_days, val_days = split_days(val_fraction, seed)
    n_val = int(round(num_pairs * val_fraction))
    first, formats = FIRST_DAY.toordinal(), len(FORMAT_NAMES)
    splits = []
    for stream, (split, days, n) in enumerate([("train", train_days, num_pairs - n_val), ("val", val_days, n_val)], 1):
        if n > len(days) * formats:
            raise ConfigError(
                f"data.num_pairs={num_pairs} asks for {n:,} {split} pairs, but the {len(days):,} {split} days have only "
                f"{len(days) * formats:,} renderings ({formats} formats each); use a smaller data.num_pairs"
            )
        picks = np.random.default_rng((seed, stream)).choice(len(days) * formats, size=n, replace=False)  # (n,)
        pairs = []
        for p in picks.tolist():  # p: day index * formats + format index
            day = dt.date.fromordinal(first + int(days[p // formats]))
            pairs.append((render(day, FORMAT_NAMES[p % formats]), day.isoformat()))
        splits.append(pairs)
    return splits[0], splits[1]
