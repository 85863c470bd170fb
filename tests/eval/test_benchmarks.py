"""Benchmark registry, bundled data and reference-solution grading: .venv/bin/pytest tests/eval/test_benchmarks.py"""

import json

import pytest

from conciser.eval.benchmarks import BUNDLED, DATA_DIR, R1_TEMPLATE, known_benchmarks, load_benchmark

ROWS = {"math500": 500, "aime24": 30, "aime25": 30, "amc23": 40, "gsm8k": 1319, "minerva": 272, "olympiadbench": 675}


@pytest.mark.parametrize("name", sorted(ROWS))
def test_bundled_benchmarks_load_offline(name):
    b = load_benchmark(name)
    assert len(b.problems) == ROWS[name]
    assert len({p.id for p in b.problems}) == ROWS[name]
    assert all(p.answer and p.question for p in b.problems)
    assert b.grader == "math" and b.template == R1_TEMPLATE and b.max_new_tokens == 32768
    assert "Please reason step by step, and put your final answer within \\boxed{}." in b.user_message(b.problems[0])


def test_sources_and_licences_listed():
    sources = (DATA_DIR / "SOURCES.md").read_text()
    for spec in BUNDLED.values():
        assert f"`{spec.file}`" in sources
    for lic in set(__import__("re").findall(r"`(LICENSE\.[\w.-]+\.md)`", sources)):
        assert (DATA_DIR / lic).is_file(), lic
    assert not any("train" in f.name for f in DATA_DIR.glob("*.jsonl"))   # test sets only


def test_toy_benchmark():
    from conciser import toy

    b = load_benchmark("toy")
    assert b.grader == "toy" and b.max_new_tokens == toy.DEFAULT_MAX_COMPLETION
    ref = toy.eval_problems(len(b.problems))
    assert [p.id for p in b.problems] == [p.id for p in ref]
    assert b.user_message(b.problems[0]) == ref[0].prompt          # the plain toy prompt
    assert b.problems[0].meta == {"level": ref[0].level, "minimal_tokens": ref[0].minimal_tokens}
    # the Dynasor probe is cut from the toy's own answer format
    done = b.exit_suffix.format(answer="7")
    assert done.startswith(b.probe) and done[len(b.probe):].strip().startswith("7")
    assert toy.THINK_CLOSE in b.probe and b.probe.endswith("{")


def test_unknown_benchmark_lists_known_ones():
    with pytest.raises(ValueError) as e:
        load_benchmark("math5000")
    for name in known_benchmarks():
        assert name in str(e.value)


def test_user_jsonl_with_column_mapping(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps({"uid": f"q{i}", "prompt": f"What is {i}+{i}?", "gold": str(2 * i), "level": "3"})
                              for i in range(3)) + "\n")
    with pytest.raises(ValueError, match=r"column\(s\) \['answer'\] not found.*--columns"):
        load_benchmark(str(path), columns={"question": "prompt"})
    b = load_benchmark(str(path), columns={"question": "prompt", "answer": "gold", "id": "uid"}, template="plain")
    assert b.name == "mine" and [p.id for p in b.problems] == ["q0", "q1", "q2"]
    assert b.problems[2].answer == "4" and b.user_message(b.problems[1]) == "What is 1+1?"
    assert b.problems[0].meta["level"] == 3
    with pytest.raises(ValueError, match="does not exist"):
        load_benchmark(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="placeholder"):
        load_benchmark(str(path), columns={"question": "prompt", "answer": "gold"}, template="no placeholder")


def reference_completion(name, p):
    """The reference solution as a completion: as written, GSM8K's "#### X" line boxed."""
    if name == "gsm8k":
        head, _, final = p.solution.rpartition("####")
        return head + "\\boxed{" + final.strip() + "}"
    return p.solution


@pytest.mark.parametrize("name", ["math500", "gsm8k", "minerva", "aime24"])
@pytest.mark.parametrize("through_math_verify", [False, True])
def test_reference_solutions_grade_correct(name, through_math_verify):
    """>= 99% of reference solutions with a boxed answer are graded correct against their gold
    answers. With through_math_verify the gold is given boxed, so no row is settled by the
    exact-string shortcut and every one goes through math-verify (when written: MATH-500 500/500,
    GSM8K 1319/1319, Minerva 272/272, AIME 2024 29/29 — one of its 30 solutions has no box)."""
    from conciser.rewards.grading import grade_batch

    problems = [p for p in load_benchmark(name).problems if "\\boxed" in reference_completion(name, p)]
    assert len(problems) >= 29
    golds = [f"\\boxed{{{p.answer}}}" if through_math_verify else p.answer for p in problems]
    grades = grade_batch(golds=golds, completions=[reference_completion(name, p) for p in problems], timeout=20)
    failing = [(p.id, p.answer, g.extracted, g.error) for p, g in zip(problems, grades) if not g.correct]
    assert len(failing) <= 0.01 * len(problems), f"{len(failing)} reference solutions graded wrong: {failing}"


def test_datasets_path_with_a_local_folder(tmp_path):
    """hf:<id> goes through datasets.load_dataset; offline, a local dataset folder stands in for the hub."""
    pytest.importorskip("datasets")
    (tmp_path / "test.jsonl").write_text(json.dumps({"question": "1+1?", "final": "2"}) + "\n")
    b = load_benchmark(f"hf:{tmp_path}", columns={"question": "question", "answer": "final"})
    assert b.name == tmp_path.name and [(p.question, p.answer) for p in b.problems] == [("1+1?", "2")]


BAD_ROWS = [
    # (rows as JSONL lines, message): line numbers are the file's 1-based lines (blank lines count)
    (['{"problem": "1+1?", "answer": "2", "id": "a"}', "", '{"problem": "2+2?", "answer": ["4"], "id": "b"}'],
     r"bad.jsonl:3: column 'answer' must be text or a number, got list"),
    (['{"problem": {"text": "1+1?"}, "answer": "2"}'], r"bad.jsonl:1: column 'problem' must be text, got dict"),
    (['{"problem": "1+1?", "answer": "2", "id": "a"}', '{"problem": "2+2?", "answer": "4", "id": "a"}'],
     r"bad.jsonl:2: duplicate id 'a' in column 'id' \(first at .*bad.jsonl:1\)"),
    (['{"problem": "1+1?", "answer": "2"}', '["a list row"]'], r"bad.jsonl:2: a row must be a JSON object"),
    (['{"problem": "1+1?", "answer": "2"}', '{"problem": "2+2?"'], r"bad.jsonl:2: not valid JSON"),
    (['{"problem": "1+1?", "answer": null}'], r"bad.jsonl:1: no 'answer' or 'problem' value"),
    (['{"problem": "1+1?", "answer": true}'], r"bad.jsonl:1: column 'answer' must be text or a number, got bool"),
]


@pytest.mark.parametrize("lines,message", BAD_ROWS)
def test_bad_rows_name_their_line(tmp_path, lines, message):
    from conciser.errors import UserError

    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=message):
        load_benchmark(str(path))


def test_numbers_are_answers_and_rows_keep_their_line(tmp_path):
    path = tmp_path / "ok.jsonl"
    path.write_text('\n{"problem": "1+1?", "answer": 2, "id": 7}\n\n{"problem": "1/2?", "answer": 0.5}\n')
    b = load_benchmark(str(path))
    assert [(p.id, p.answer, p.line) for p in b.problems] == [("7", "2", 2), ("1", "0.5", 4)]


def test_pinned_protocol():
    assert load_benchmark("aime24").pinned == {"n": 16, "temperature": 0.6, "top_p": 0.95}
    assert load_benchmark("amc23").pinned["n"] == 16
    assert load_benchmark("math500").pinned == {} and load_benchmark("toy").pinned == {}
