"""Every saved benchmark result carries its provenance (benchmarks/common.py, issue 21)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import common  # benchmarks/common.py: tests/benchmarks/conftest.py puts it on the path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_saved_results_record_commit_command_machine_dates_and_load(tmp_path, monkeypatch):
    arguments = [
        "--repeats",
        "3",
        "--keep",
        str(tmp_path / "runs" / "out"),
        "--data",
        str(BENCHMARKS),
    ]
    monkeypatch.setattr(sys, "argv", [str(BENCHMARKS / "some_benchmark.py"), *arguments])
    path = common.save_results(str(tmp_path / "some_benchmark.py"), {"figure": 1.5})
    saved = json.loads(path.read_text())
    assert path == tmp_path / "some_benchmark.json" and saved["figure"] == 1.5
    assert re.fullmatch(r"[0-9a-f]{40}", saved["commit"]), saved["commit"]
    assert isinstance(saved["tree_dirty"], bool) and isinstance(saved["changed_files"], list)
    assert saved["command"] == (
        "python benchmarks/some_benchmark.py --repeats 3 --keep out --data benchmarks"
    )
    machine = saved["machine"]
    assert {"cpu", "vendor", "cores", "isa", "torch", "python"} <= set(machine)
    assert set(machine["isa"]) <= set(common.ISA_FEATURES)
    assert saved["started"] <= saved["finished"]
    for moment in ("start", "end"):
        assert len(saved["load_average"][moment]) == 3  # 1, 5 and 15 minutes
    named = common.save_results(str(tmp_path / "x.py"), {}, name="experiment_cost.json")
    assert named == tmp_path / "experiment_cost.json"


def test_a_result_of_another_command_is_kept_and_this_one_saved_as_a_trial(
    tmp_path, monkeypatch, capsys
):
    script = str(tmp_path / "train_speed.py")
    monkeypatch.setattr(sys, "argv", [script, "--seeds", "0", "1", "2", "3", "4"])
    quoted = common.save_results(script, {"figure": 15.0})
    monkeypatch.setattr(sys, "argv", [script, "--seeds", "0"])
    trial = common.save_results(script, {"figure": 9.0})
    assert json.loads(quoted.read_text())["figure"] == 15.0
    assert trial.parent == tmp_path / "trials" and trial.name.startswith("train_speed-")
    assert json.loads(trial.read_text())["figure"] == 9.0
    assert "holds the result of another command" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", [script, "--seeds", "0", "1", "2", "3", "4"])
    assert common.save_results(script, {"figure": 16.0}) == quoted  # the same command: replaced
    assert json.loads(quoted.read_text())["figure"] == 16.0


def test_saved_results_name_no_folder_of_the_machine_that_ran_them():
    """The paths in saved results are the repository's own or bare names (`portable`)."""
    for path in BENCHMARKS.glob("*.json"):
        text = path.read_text()
        assert json.loads(text) == common.portable_document(json.loads(text)), path.name


def test_saved_results_and_documentation_do_not_make_the_tree_dirty(monkeypatch):
    changed = "README.md\nbenchmarks/serve_load.json\n"
    monkeypatch.setattr(
        common, "_git", lambda tree, *a: "f" * 40 if a[0] == "rev-parse" else changed
    )
    assert common.commit_facts()["tree_dirty"] is False
    changed += "convnet/data/idx.py\n"
    facts = common.commit_facts()
    assert facts["tree_dirty"] is True and "convnet/data/idx.py" in facts["changed_files"]


def test_targets_are_judged_in_code(capsys):
    targets = common.judge({"fast enough": True, "small enough": False})
    assert [t["verdict"] for t in targets] == ["met", "NOT met"]
    assert "NOT met  small enough" in capsys.readouterr().out
