"""Sequence-to-sequence data: the dates generator and CSV/TSV pairs (dlcli.data.pairs)."""

import re
from collections import Counter

import numpy as np
import pytest

from dlcli.data.dates import HUMAN_VOCAB, MACHINE_VOCAB, date_pairs
from dlcli.data.pairs import EOS, PAD, encode_sources, read_pairs, source_vocabulary
from dlcli.errors import BadInput

from conftest import course_data


def shape_of(text):
    return re.sub("[a-z]+", "w", re.sub("[0-9]", "9", text))


def test_dates_generator_is_seeded_and_writes_the_course_formats():
    pairs = date_pairs(np.random.default_rng(0), 3000)
    assert pairs == date_pairs(np.random.default_rng(0), 3000)
    assert pairs != date_pairs(np.random.default_rng(1), 3000)
    import datetime
    for human, machine in pairs:
        d = datetime.date.fromisoformat(machine)
        assert datetime.date(1970, 1, 1) <= d <= datetime.date(2021, 2, 24)
        assert str(d.day) in human
    # the full format ("tuesday june 5 2018") is 10 of the 24 formats, as the course's list
    full = sum(bool(re.fullmatch(r"[a-z]+day [a-z]+ \d+ \d{4}", h)) for h, _ in pairs)
    assert abs(full / len(pairs) - 10 / 24) < 0.03
    assert set("".join(h for h, _ in pairs)) == set(HUMAN_VOCAB[:-2])
    assert len(HUMAN_VOCAB) == 37 and len(MACHINE_VOCAB) == 11


def test_dates_generator_matches_the_courses_file():
    path = course_data("dates", "dates_10000.tsv")
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    ours = Counter(shape_of(h) for h, _ in date_pairs(np.random.default_rng(3), len(rows)))
    theirs = Counter(shape_of(h) for h, _ in rows)
    assert set(ours) == set(theirs)
    for k in theirs:  # each layout's share within a few points of the course's
        assert abs(ours[k] - theirs[k]) / len(rows) < 0.02, k


def test_dates_builtin_source():
    x, y, vocab, origin = read_pairs({"builtin": "dates", "n": 50}, "data.train", np.random.default_rng(0))
    assert x.shape == (50, 30, 37) and y.shape == (50, 10)
    assert np.all(x.sum(axis=2) == 1) and y.min() >= 0 and y.max() < 11
    assert vocab["source"].tokens == HUMAN_VOCAB and vocab["target"].tokens == MACHINE_VOCAB
    human = vocab["source"].decode(x[0].argmax(axis=1))
    assert vocab["target"].decode(y[0]) == date_pairs(np.random.default_rng(0), 50)[0][1]
    assert human == date_pairs(np.random.default_rng(0), 50)[0][0]
    ids, _, _, _ = read_pairs({"builtin": "dates", "n": 50}, "data.train", np.random.default_rng(0),
                              token_ids=True)
    assert ids.shape == (50, 30) and np.array_equal(ids, x.argmax(axis=2))


def test_course_tsv_gives_the_courses_vocabularies():
    path = course_data("dates", "dates_10000.tsv")
    x, y, vocab, _ = read_pairs({"path": str(path), "x": "human", "y": "machine", "unit": "char",
                                 "target_unit": "char", "max_length": 30}, "data.train", None)
    assert vocab["source"].tokens == HUMAN_VOCAB
    assert vocab["target"].tokens == MACHINE_VOCAB
    assert x.shape == (10000, 30, 37) and y.shape == (10000, 10)
    assert vocab["source"].decode(x[0].argmax(axis=1)) == "9 may 1998"
    assert vocab["target"].decode(y[0]) == "1998-05-09"


def test_word_pairs_with_eos_and_unknown_tokens(tmp_path):
    f = tmp_path / "pairs.csv"
    f.write_text("en,fr\nthe cat,le chat\na black cat,un chat noir\n")
    x, y, vocab, _ = read_pairs({"path": str(f), "x": "en", "y": "fr", "unit": "word",
                                 "target_unit": "word"}, "data.train", None)
    tgt = vocab["target"]
    assert tgt.tokens == ["chat", "le", "noir", "un", EOS] and tgt.length == 4
    assert y.tolist() == [[1, 0, 4, -1], [3, 0, 2, 4]]
    assert tgt.decode(y[1]) == "un chat noir"
    src = vocab["source"]
    assert src.length == 3 and src.tokens[-2:] == ["<unk>", PAD]
    unk = encode_sources(["the dog"], src, ids=True)[0]
    assert [src.tokens[i] for i in unk] == ["the", "<unk>", PAD]
    # a held-out file is read with the train source's vocabularies
    g = tmp_path / "test.csv"
    g.write_text("en,fr\nthe dog,le chien\n")
    with pytest.raises(BadInput, match="chien"):
        read_pairs({"path": str(g), "x": "en", "y": "fr", "unit": "word", "target_unit": "word"},
                   "data.test", None, vocab)


def test_missing_column_is_bad_input(tmp_path):
    f = tmp_path / "pairs.tsv"
    f.write_text("human\tmachine\n3 may 1979\t1979-05-03\n")
    with pytest.raises(BadInput, match="no column 'source'") as err:
        read_pairs({"path": str(f), "x": "source", "y": "machine", "target_unit": "char"},
                   "data.train", None)
    assert err.value.key == "data.train.x"


def test_source_vocabulary_cuts_to_max_length():
    v = source_vocabulary(["abcdef"], "char", length=4)
    x = encode_sources(["abcdefgh"], v)
    assert x.shape == (1, 4, len(v.tokens)) and v.decode(x[0].argmax(1)) == "abcd"
