"""The reference-statistics loader (rewards/reference.py): the eval harness's samples.jsonl -> per-problem
mean length and solved fraction, and its checks against the run's model and training problems."""

import json
import logging

import pytest

from conciser.errors import MissingInput, UserError
from conciser.rewards.reference import ProblemStats, ReferenceStats, load_reference_stats

from reference_files import write_reference


def test_per_problem_mean_length_and_solved_fraction(tmp_path):
    # a: lengths 10, 20, 30, 40 -> 25; solved: 1st and 3rd (the 4th is correct but hit the cap) -> 0.5
    write_reference(tmp_path / "REF" / "train", {
        "a": [(10, True), (20, False), (30, True), (40, True, "length")],
        "b": [(7, False), (9, False)],
    }, model="/models/base")
    stats = load_reference_stats(tmp_path / "REF")
    assert stats["a"] == ProblemStats(mean_length=25.0, accuracy=0.5, samples=4)
    assert stats["b"] == ProblemStats(mean_length=8.0, accuracy=0.0, samples=2)
    assert stats.model == "/models/base" and stats.source == str(tmp_path / "REF" / "train" / "samples.jsonl")
    assert stats.mean_accuracy == 0.25  # per problem: (0.5 + 0.0) / 2
    assert len(stats) == 2 and list(stats.subset(["b"]).problems) == ["b"]


@pytest.mark.parametrize("where", ["REF", "REF/train", "REF/train/samples.jsonl"])
def test_the_run_folder_the_benchmark_folder_or_the_file(tmp_path, where):
    write_reference(tmp_path / "REF" / "train", {"a": [(10, True)]})
    assert load_reference_stats(tmp_path / where)["a"].mean_length == 10.0


def test_a_line_cut_by_a_crash_is_skipped_and_a_repeated_sample_counted_once(tmp_path, caplog):
    dup = json.dumps({"problem_id": "a", "sample": 0, "tokens": 99, "correct": False})
    path = write_reference(tmp_path / "t", {"a": [(10, True), (30, True)]}, lines=[dup, '{"problem_id": "a", "sam'])
    with caplog.at_level(logging.WARNING):
        stats = load_reference_stats(path)
    assert stats["a"] == ProblemStats(20.0, 1.0, 2)
    assert "unreadable" in caplog.text


@pytest.mark.parametrize("lines,message", [
    ([], "hold no samples"),
    ([json.dumps({"problem_id": "a", "sample": 0, "tokens": 5})], "not graded yet.*resumes and grades"),
    ([json.dumps({"problem_id": "a", "sample": 0, "tokens": -1, "correct": True})], "no token count"),
    ([json.dumps({"sample": 0, "tokens": 1, "correct": True})], "no 'problem_id'"),
])
def test_bad_files_name_the_file_and_the_fix(tmp_path, lines, message):
    path = write_reference(tmp_path / "t", {}, lines=lines)
    with pytest.raises(UserError, match=message) as err:
        load_reference_stats(path)
    assert str(tmp_path) in str(err.value)


def test_missing_and_ambiguous_paths(tmp_path):
    with pytest.raises(MissingInput, match="do not exist"):
        load_reference_stats(tmp_path / "nope")
    with pytest.raises(UserError, match="empty path"):
        load_reference_stats(" ")
    write_reference(tmp_path / "REF" / "one", {"a": [(1, True)]})
    write_reference(tmp_path / "REF" / "two", {"a": [(1, True)]})
    with pytest.raises(UserError, match="several benchmarks \\(one, two\\)"):
        load_reference_stats(tmp_path / "REF")


def test_check_against_the_model_and_the_training_problems(tmp_path, caplog):
    stats = load_reference_stats(write_reference(tmp_path / "t", {"a": [(1, True)], "b": [(2, False)]}, model="m1"))
    stats.check(model="m1", problem_ids=["a", "b", "a"], fix="FIX")
    with pytest.raises(UserError, match="written for the model 'm1', but this run starts from 'm2'.*FIX"):
        stats.check(model="m2", problem_ids=["a"], fix="FIX")
    with pytest.raises(UserError, match="no samples of 2 of the 3 training problems \\('c', 'd'\\).*FIX"):
        stats.check(model="m1", problem_ids=["a", "c", "d"], fix="FIX")
    unknown = load_reference_stats(write_reference(tmp_path / "u", {"a": [(1, True)]}, model=None))
    with caplog.at_level(logging.WARNING):
        unknown.check(model="m1", problem_ids=["a"], fix="")
    assert unknown.model is None and "no run.json" in caplog.text


def test_a_problem_outside_the_statistics_is_named():
    stats = ReferenceStats({"a": ProblemStats(1.0, 1.0, 1)}, "REF/samples.jsonl")
    with pytest.raises(ValueError, match="no samples of problem 'z'"):
        stats["z"]
