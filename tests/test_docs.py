"""Every CLI command is documented in the README (sqlite-utils' test_docs habit)."""

from __future__ import annotations

from pathlib import Path

import click

from csbot.cli import cli

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def commands(group: click.Group, prefix: str = "csbot") -> list[str]:
    names = []
    for name, command in group.commands.items():
        full = f"{prefix} {name}"
        names += commands(command, full) if isinstance(command, click.Group) else [full]
    return names


def test_every_command_is_in_the_readme():
    missing = [c for c in commands(cli) if c not in README]
    assert missing == []


def test_every_command_has_an_example():
    for name in commands(cli):
        command = cli
        for part in name.split()[1:]:
            command = command.commands[part]
        assert "Example:" in (command.help or ""), name
