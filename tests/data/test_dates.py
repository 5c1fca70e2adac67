"""data=dates (attnlab.data.dates): every rendering names its day (checked against datetime), the
splits are disjoint by day and fixed by the seed, and 20,000 pairs take well under a second."""

import datetime as dt
import re
import time

import pytest

from attnlab.data.dates import (
    FIRST_DAY,
    FORMAT_NAMES,
    LAST_DAY,
    NUM_DAYS,
    date_pairs,
    ordinal,
    render,
    split_days,
)
from attnlab.errors import ConfigError

# The other languages' names, spelled out here again (months from January, weekdays from Monday).
FRENCH_MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre")
FRENCH_MONTHS += ("novembre", "décembre")
GERMAN_MONTHS = ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober")
GERMAN_MONTHS += ("November", "Dezember")
SPANISH_MONTHS = ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre")
SPANISH_MONTHS += ("octubre", "noviembre", "diciembre")
FRENCH_WEEKDAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
GERMAN_WEEKDAYS = ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag")
MARCH_3 = dt.date(2021, 3, 3)  # a Wednesday


@pytest.fixture(scope="module")
def pairs():
    return date_pairs(20_000, 0.1, seed=0)


def test_the_formats_of_the_docstring(pairs):
    written = {fmt: render(MARCH_3, fmt) for fmt in FORMAT_NAMES}
    assert written == {
        "ordinal_of": "3rd of March 2021",
        "weekday": "Wednesday, 3 March 2021",
        "d_mon": "3 Mar 2021",
        "wkd_d_mon": "Wed 3 Mar 2021",
        "month_d": "March 3, 2021",
        "month_ordinal": "March 3rd, 2021",
        "dd/mm/yy": "03/03/21",
        "d/m/yyyy": "3/3/2021",
        "yyyy.mm.dd": "2021.03.03",
        "dd-mon-yyyy": "03-Mar-2021",
        "french": "3 mars 2021",
        "french_weekday": "mercredi 3 mars 2021",
        "german": "3. März 2021",
        "german_weekday": "Mittwoch, 3. März 2021",
        "spanish": "3 de marzo de 2021",
    }
    assert render(dt.date(1999, 8, 1), "french") == "1er août 1999"
    assert render(dt.date(1950, 12, 4), "dd/mm/yy") == "04/12/50"  # day first


def test_ordinals():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 24, 30, 31)] == [
        *("1st", "2nd", "3rd", "4th", "11th", "12th", "13th"),
        *("21st", "22nd", "23rd", "24th", "30th", "31st"),
    ]


# Each English format read back by datetime's own parser (the C locale's English names);
# ordinals lose their suffix first.
STRPTIME = {
    "ordinal_of": "%d of %B %Y",
    "weekday": "%A, %d %B %Y",
    "d_mon": "%d %b %Y",
    "wkd_d_mon": "%a %d %b %Y",
    "month_d": "%B %d, %Y",
    "month_ordinal": "%B %d, %Y",
    "d/m/yyyy": "%d/%m/%Y",
    "yyyy.mm.dd": "%Y.%m.%d",
    "dd-mon-yyyy": "%d-%b-%Y",
}


def test_every_english_rendering_parses_back_to_its_target_with_the_right_weekday():
    days = [FIRST_DAY + dt.timedelta(days=i) for i in range(0, NUM_DAYS, 7)] + [LAST_DAY]  # every weekday too
    for fmt, pattern in STRPTIME.items():
        for day in days:
            text = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", render(day, fmt))
            assert dt.datetime.strptime(text, pattern).date() == day, (fmt, text)
    for day in days:  # strptime's %y reads 00..68 as 20xx; ours reads 00..49 as 20xx, 50..99 as 19xx
        d, m, y = map(int, render(day, "dd/mm/yy").split("/"))
        assert dt.date(1900 + y if y >= 50 else 2000 + y, m, d) == day


def test_every_pair_names_its_target_day_and_weekday(pairs):
    months = {dt.date(2000, m, 1).strftime(f): m for m in range(1, 13) for f in ("%B", "%b")}  # English
    for names in (FRENCH_MONTHS, GERMAN_MONTHS, SPANISH_MONTHS):
        months.update((name, m) for m, name in enumerate(names, 1))
    weekdays = {dt.date(2024, 1, i).strftime(f): i - 1 for i in range(1, 8) for f in ("%A", "%a")}  # 1 Jan: Monday
    for names in (FRENCH_WEEKDAYS, GERMAN_WEEKDAYS):
        weekdays.update((name, i) for i, name in enumerate(names))
    named_weekdays = 0
    for source, target in (*pairs[0], *pairs[1]):
        day = dt.date.fromisoformat(target)
        assert day.isoformat() == target and FIRST_DAY <= day <= LAST_DAY
        words = re.findall(r"[^\W\d_]+", source)
        if words and words[0] in weekdays:
            assert weekdays[words[0]] == day.weekday(), (source, target)
            named_weekdays += 1
        if any(w in months for w in words):
            assert [months[w] for w in words if w in months] == [day.month], (source, target)
        assert str(day.day) in source and (str(day.year) in source or f"{day.year % 100:02d}" in source)
    assert named_weekdays > 20_000 * 4 / 15 * 0.8  # 4 of the 15 formats name the weekday


def test_the_splits_are_disjoint_by_day_and_sized_as_asked(pairs):
    train, val = pairs
    assert (len(train), len(val)) == (18_000, 2_000)
    assert {t for _, t in train}.isdisjoint({t for _, t in val})
    assert len(set(train)) == len(train) and len(set(val)) == len(val)  # no pair twice
    train_days, val_days = split_days(0.1, seed=0)
    assert len(val_days) == round(NUM_DAYS * 0.1) and len(train_days) + len(val_days) == NUM_DAYS
    val_targets = {(FIRST_DAY + dt.timedelta(days=int(d))).isoformat() for d in val_days}
    assert {t for _, t in val} <= val_targets and val_targets.isdisjoint(t for _, t in train)
    assert {render(dt.date.fromisoformat(t), f) for _, t in train[:50] for f in FORMAT_NAMES}.isdisjoint(
        s for s, _ in val
    )  # no rendering of a training day is a val source
    assert len({s for s, _ in train}) > 17_900  # sources vary (a few renderings coincide, e.g. 1/1/2000)


def test_the_pairs_are_fixed_by_the_seed_and_the_val_days_do_not_depend_on_num_pairs(pairs):
    assert date_pairs(20_000, 0.1, seed=0) == pairs
    other = date_pairs(20_000, 0.1, seed=1)
    assert other[0] != pairs[0] and {t for _, t in other[1]} != {t for _, t in pairs[1]}
    small_val = {t for _, t in date_pairs(500, 0.1, seed=0)[1]}
    _, val_days = split_days(0.1, seed=0)
    assert small_val <= {(FIRST_DAY + dt.timedelta(days=int(d))).isoformat() for d in val_days}


def test_every_format_and_both_centuries_occur(pairs):
    train, _ = pairs
    years = {int(t[:4]) for _, t in train}
    assert min(years) == 1950 and max(years) == 2049
    found = {f for s, t in train[:2_000] for f in FORMAT_NAMES if render(dt.date.fromisoformat(t), f) == s}
    assert found == set(FORMAT_NAMES)


def test_twenty_thousand_pairs_take_well_under_a_second():
    start = time.perf_counter()
    date_pairs(20_000, 0.1, seed=3)
    assert time.perf_counter() - start < 0.5


def test_more_pairs_than_renderings_is_one_line():
    with pytest.raises(ConfigError) as err:
        date_pairs(600_000, 0.1, seed=0)
    assert "\n" not in str(err.value)
    assert "data.num_pairs=600000 asks for 540,000 train pairs" in str(err.value)
    assert "use a smaller data.num_pairs" in str(err.value)
