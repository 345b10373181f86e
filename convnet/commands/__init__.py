"""Command modules of the `convnet` command line; each defines COMMANDS: name -> Command.

A new group of commands is a new module here plus its name in COMMAND_MODULES. Every
`convnet` call imports every module listed and calls every `configure`, so that `--help`
and `convnet data list` start at once (tests/commands/test_common.py checks both rules):

- Import nothing heavy at the module's top or in `configure` (torch, torchvision, numpy,
  PIL, matplotlib, fastapi, captum, onnx, ...): do it inside the `run` function. Names a
  help page lists come from convnet/commands/catalog.py, not from a registry.
- Give every argument a one-line help; the formatter (common.HelpFormatter) adds
  "(default: …)" to options with a default, and an option without one says in its help
  what happens then.
"""

COMMAND_MODULES = [
    "core",
    "train",
    "demo",
    "evaluate",
    "predict",
    "export",
    "explain",
    "serve",
    "zoo",
    "experiment",
]
