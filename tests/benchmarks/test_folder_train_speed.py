"""The folder-training benchmark (issue 19): how it counts images/s, the recipe both trainers
get, and that a missing peer is a one-paragraph message with exit status 2. Its figures come
from running it (docs/benchmarks.md), not from these tests; benchmarks/gpu_path.py is
tests/benchmarks/test_gpu_path.py's."""

from __future__ import annotations

import folder_train_speed  # benchmarks/: tests/benchmarks/conftest.py puts it on the path
import pytest

# Two lines of timm train.py's log with --log-interval 1 (the format of its train_one_epoch).
TIMM_LOG = """\
Train: 0 [   0/12 (  8%)]  Loss: 2.47 (2.47)  Time: 4.100s,    7.80/s  (4.100s,    7.80/s)  LR: 1.000e-02  Data: 0.900 (0.900)
Train: 0 [   1/12 ( 17%)]  Loss: 2.40 (2.43)  Time: 2.000s,   16.00/s  (3.050s,   10.49/s)  LR: 1.000e-02  Data: 0.020 (0.460)
Test: [   0/1]  Time: 3.327 (3.327)  Loss:   2.254 ( 2.254)  Acc@1:  21.875 ( 21.875)
"""


def test_timm_steps_are_read_from_its_log_and_start_up_steps_left_out():
    seconds = [float(match[2]) for match in folder_train_speed.TIMM_STEP.findall(TIMM_LOG)]
    assert seconds == [4.1, 2.0]
    counted = folder_train_speed.images_per_second(seconds, batch_size=32, skip=1)
    assert counted == {"steps": 1, "seconds": 2.0, "images_per_second": 16.0}
    with pytest.raises(SystemExit):
        folder_train_speed.images_per_second(seconds, batch_size=32, skip=2)


def test_both_trainers_get_the_shared_recipe(tmp_path):
    options = folder_train_speed.arguments().parse_args(["--threads", "1"])
    ours = folder_train_speed.convnet_command(tmp_path, tmp_path / "run", options, "bf16", "cpu")
    theirs = folder_train_speed.timm_command(
        tmp_path / "train.py", tmp_path, tmp_path / "t", options, "bf16", "cpu"
    )
    for flags in (("--lr", "0.01"), ("--momentum", "0.9"), ("--weight-decay", "5e-4")):
        for command in (ours, theirs):
            assert command[command.index(flags[0]) + 1] == flags[1]
    assert ours[ours.index("--batch-size") + 1] == theirs[theirs.index("-b") + 1] == "32"
    assert ours[ours.index("--workers") + 1] == theirs[theirs.index("-j") + 1] == "2"
    assert theirs[theirs.index("--smoothing") + 1] == ours[ours.index("--label-smoothing") + 1]
    assert {"--channels-last", "--amp", "--no-prefetcher"} <= set(theirs)
    assert theirs[theirs.index("--color-jitter") + 1] == "0"  # convnet has no colour jitter


def test_missing_timm_or_its_train_script_exits_2_with_a_message(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(folder_train_speed.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SystemExit) as stopped:
        folder_train_speed.require_timm(str(tmp_path))
    assert stopped.value.code == 2 and "convnet[benchmark]" in capsys.readouterr().err
    # timm installed (or not: it is an optional extra), its train.py not found
    monkeypatch.setattr(folder_train_speed.importlib.util, "find_spec", lambda name: object())
    with pytest.raises(SystemExit) as stopped:
        folder_train_speed.require_timm(str(tmp_path / "absent.py"))
    assert stopped.value.code == 2 and "--timm-train PATH" in capsys.readouterr().err
