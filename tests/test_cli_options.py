"""One meaning per option name across every bake command (what a user learns once):
``-o`` is always the output directory (``--output-dir``), ``--output`` always the text|json
format."""

from __future__ import annotations

import click

from bake.main import cli


def _commands(group: click.Group, ctx: click.Context, path: str = "bake"):
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None:
            continue
        yield f"{path} {name}", command  # a group can take options too (``bake ami``)
        if isinstance(command, click.Group):
            yield from _commands(command, ctx, f"{path} {name}")


def _all_commands():
    ctx = click.Context(cli)
    return list(_commands(cli, ctx))


def test_every_command_is_reached():
    names = [name for name, _ in _all_commands()]
    assert "bake render ami" in names and "bake render cluster" in names
    assert "bake catalog list" in names and "bake images list" in names


def _options(flag: str):
    """(command name, option) for every option of every command that has ``flag``."""
    return [(name, param) for name, command in _all_commands() for param in command.params
            if flag in getattr(param, "opts", ())]


def test_dash_o_is_always_the_output_directory():
    found = _options("-o")
    for name, param in found:
        assert "--output-dir" in param.opts, (name, param.opts)
        assert isinstance(param.type, click.Path) and not param.type.file_okay, name
    assert {"bake render ami", "bake render cluster"} <= {name for name, _ in found}


def test_output_is_always_text_or_json():
    found = _options("--output")
    for name, param in found:
        assert isinstance(param.type, click.Choice), name
        assert list(param.type.choices) == ["text", "json"], (name, param.type.choices)
        assert param.default == "text", name
    assert {"bake catalog list", "bake images list", "bake ami"} <= {name for name, _ in found}
