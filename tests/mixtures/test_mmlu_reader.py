"""MMLU's files as the original release lays them out: every cell text as written, bad rows named by line."""

import csv
from pathlib import Path

import pytest

from flanforge.mixtures.sources.mmlu import MMLURow, read_mmlu, read_rows
from flanforge.mixtures.task import TaskError

REDUX = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mmlu_redux"


def write_subject(root, split, subject, rows):
    folder = root / "data" / split
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{subject}_{split}.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return folder / f"{subject}_{split}.csv"


def test_cells_are_text_as_written_and_quoted_line_breaks_stay(tmp_path):
    path = write_subject(tmp_path, "test", "virology", [["Two\nlines ", "None", "1", "2.0", " d", "B"],
                                                         ["Q2", "a", "b", "c", "d", "D"]])
    assert read_rows(path) == [MMLURow("Two\nlines ", ("None", "1", "2.0", " d"), "B"),
                               MMLURow("Q2", ("a", "b", "c", "d"), "D")]


@pytest.mark.parametrize("bad, message", [(["Q", "a", "b", "c", "D"], r"expected 6 columns .* found 5"),
                                          (["Q", "a", "b", "c", "d", "E"], r"the answer 'E' is not one of A, B, C, D")])
def test_a_bad_row_is_named_by_file_and_line(tmp_path, bad, message):
    # the first record spans lines 1-2 (a quoted line break): the bad one starts on line 3
    path = write_subject(tmp_path, "test", "virology", [["Q\nQ", "a", "b", "c", "d", "A"], bad])
    with pytest.raises(TaskError, match=rf"{path}:3: {message}"):
        read_rows(path)


def test_exemplars_are_the_first_dev_rows_and_nothing_is_read_short(tmp_path):
    write_subject(tmp_path, "test", "virology", [[f"T{i}", "a", "b", "c", "d", "A"] for i in range(4)])
    write_subject(tmp_path, "dev", "virology", [[f"D{i}", "a", "b", "c", "d", "C"] for i in range(3)])
    [subject] = read_mmlu(tmp_path, "test", 2, max_examples=3)
    assert [e.question for e in subject.exemplars] == ["D0", "D1"]
    assert [r.question for r in subject.rows] == ["T0", "T1", "T2"]
    assert read_mmlu(tmp_path, "test", 0)[0].exemplars == []
    with pytest.raises(TaskError, match=r"subject 'virology': --shots 4 asks for 4 exemplars but .*virology_dev.csv has 3"):
        read_mmlu(tmp_path, "test", 4)


def test_a_missing_dev_file_split_or_unknown_subject_is_named(tmp_path):
    write_subject(tmp_path, "test", "virolgy", [["Q", "a", "b", "c", "d", "A"]])
    with pytest.raises(TaskError, match=r"'virolgy' is not an MMLU subject; did you mean 'virology'"):
        read_mmlu(tmp_path, "test", 0, known=("virology", "anatomy"))
    with pytest.raises(TaskError, match=r"subject 'virolgy': 5-shot prompts need .*data/dev/virolgy_dev.csv"):
        read_mmlu(tmp_path, "test", 5)
    with pytest.raises(TaskError, match=r"no .*data/val \(split 'validation'\); .*data holds: test"):
        read_mmlu(tmp_path, "validation", 0)
    with pytest.raises(TaskError, match=r"no .*data/test .*holds: nothing"):
        read_mmlu(tmp_path / "nowhere", "test", 0)


@pytest.mark.skipif(not REDUX.is_dir(), reason=f"MMLU-Redux is not at {REDUX} (shared data absent)")
def test_mmlu_redux_reads_whole():
    subjects = read_mmlu(REDUX, "test", 5)
    assert len(subjects) == 57 and sum(len(s.rows) for s in subjects) == 5045
    assert all(len(s.exemplars) == 5 for s in subjects)
