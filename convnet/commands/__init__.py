"""Command modules of the `convnet` command line; each defines COMMANDS: name -> Command.

A new group of commands is a new module here plus its name in COMMAND_MODULES.
"""

COMMAND_MODULES = ["core", "train", "evaluate", "export", "explain", "serve", "zoo", "experiment"]
