"""`python -m competition <command>`: the launcher of the CLI.

The contracts in this package import nothing of the project; the CLI (cli/) is the top floor, above every
other. This launcher is the one file allowed to reach it, by name, so the familiar command stays:
tests/test_architecture.py checks that no other file of the lower floors refers to a higher one.
"""

import runpy

runpy.run_module("cli", run_name="__main__", alter_sys=True)
