"""Shared fixtures: the real MNIST data (fetched by `make setup`), one trained run, a small
image folder, and the process's state given back after each test."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from filelock import FileLock

from convnet.data.datasets import default_data_dir, fetch_dataset, load_dataset

pytest.register_assert_rewrite("tests.helpers")  # before the helpers are imported

from tests.helpers.cli import run_cli  # noqa: E402
from tests.helpers.folder_data import make_split_folders  # noqa: E402

# Fixtures of the generated CIFAR-10 files, for the data and engine tests that read them.
pytest_plugins = ["tests.helpers.cifar_data"]

# The longest files (processes, servers, a browser), run first. `make test` hands whole files
# to its two workers in collection order (pytest-xdist, --dist loadfile); a long file collected
# last kept one worker busy for up to half a minute after the other had run out of work.
LONGEST_FIRST = (
    "engine/test_distributed.py",
    "serve/test_connections.py",
    "serve/test_browser.py",
    "engine/test_export.py",
    "engine/test_train_recipes.py",
    "engine/test_resume.py",
    "data/test_images.py",
    "report/test_lecture.py",
    "commands/test_train_command.py",
    "engine/test_run_lock.py",
    "engine/test_weight_files.py",
    "commands/test_evolution_command.py",
    "serve/test_memory.py",
    "engine/test_run_control.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """LONGEST_FIRST's files first, in its order; the rest as collected (a stable sort)."""

    def place(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0].removeprefix("tests/")
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=place)


# The process's own settings, before any command run in it (`convnet.cli.main`) changed them.
SETTINGS: dict = {}


@pytest.fixture(scope="session", autouse=True)
def process_settings():
    """One CPU thread for what this process computes: the tests' networks are small and the
    machines they run on shared, and a second OpenMP thread waiting for a busy core made
    tests up to 20 times slower (a resnet101 backward pass: 12 s instead of 0.6 s), which is
    why `convnet` itself picks one thread on a busy machine (convnet/engine/threads.py).
    Commands run in subprocesses still make their own choice. A fixture, not module code:
    `make test`'s coordinating process (pytest-xdist) runs no test and imports no torch."""
    import torch

    torch.set_num_threads(1)
    SETTINGS["threads"] = torch.get_num_threads()
    SETTINGS["stop_handlers"] = {
        number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)
    }


@pytest.fixture(scope="module", autouse=True)
def memory_given_back():
    """After each test file, its objects collected and the C heap's free pages returned to
    the system (glibc's malloc_trim): a worker that ran the files before keeps no more than
    what it still holds. Without it each of the two workers grew to about 1 GB (summed PSS
    of the suite's processes: 4.33 GiB at its peak)."""
    yield
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    library = ctypes.util.find_library("c")
    if library:
        trim = getattr(ctypes.CDLL(library), "malloc_trim", None)
        if trim is not None:
            trim(0)


@pytest.fixture(autouse=True)
def process_state_restored(process_settings):
    """What a command run in this process may change for the rest of the process, given back
    after each test (and after a module's fixture that ran one): the CPU thread count
    (--threads, or the automatic choice) and the handlers of the stop signals."""
    import torch

    yield
    torch.set_num_threads(SETTINGS["threads"])
    for number, handler in SETTINGS["stop_handlers"].items():
        signal.signal(number, handler)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The data cache holding verified MNIST (fetched now if `make setup` has not)."""
    fetch_dataset("mnist")
    return default_data_dir()


@pytest.fixture(scope="session")
def mnist_test(mnist_dir):
    return load_dataset("mnist", "test")


@pytest.fixture(scope="session")
def trained_run(mnist_dir, tmp_path_factory, worker_id) -> tuple[Path, dict]:
    """One epoch of lenet5 on the full MNIST training set, through the command line (in a
    process of its own, as a user runs it). The full set, not a subset: its tests ask for
    what a trained network does (97.5% after one epoch, 9 of 10 drawn digits read in every
    light, explanations on the strokes), and the epoch costs seconds. Trained once per
    session: under pytest-xdist the first worker to need it trains it while holding a file
    lock in the directory the workers share, and the others wait and read it."""
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent  # the session's directory, above each worker's own
    run_dir, result_file = root / "trained-lenet5", root / "trained-lenet5.json"
    with FileLock(f"{result_file}.lock"):
        if not result_file.is_file():
            result = run_cli(
                "train", "lenet5", "--epochs", "1", "--out", str(run_dir), "--json", check=True
            )
            result_file.write_text(result.stdout)
    return run_dir, json.loads(result_file.read_text())


@pytest.fixture(scope="session")
def folders(tmp_path_factory) -> Path:
    """A small image folder (5 classes, 16 training and 6 validation images each) for the
    training runs on files; tests that need another size define their own `folders`."""
    return make_split_folders(tmp_path_factory.mktemp("engine") / "data", 16, 6)


@pytest.fixture(scope="session")
def shards(folders, tmp_path_factory) -> Path:
    """`folders` as `convnet data shard` writes it: tar shards of 16 images and a manifest."""
    from tests.helpers.shard_data import make_shards

    return make_shards(folders, tmp_path_factory.mktemp("engine") / "shards", "16")


@pytest.fixture
def one_thread():
    """One thread per process: two spinning OpenMP threads on a busy 2-core machine are ~40×
    slower than one (measured: lenet5 step 170 ms vs 4.5 ms)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
