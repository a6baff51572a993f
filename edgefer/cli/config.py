"""`edgefer config`: print a commented default configuration, or check a file."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("config")
@click.option("--example", is_flag=True, help="Print the default configuration as commented TOML.")
@click.option("--check", "check", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Validate FILE; exit 0 if valid, 78 with one line naming the key and line if not.")
def config(example: bool, check: Path | None) -> None:
    """Print an example configuration or validate one.

    \b
    Examples:
      edgefer config --example > /etc/edgefer/config.toml
      edgefer config --check /etc/edgefer/config.toml
    """
    from edgefer.config import example_toml, load_config
    from edgefer.errors import UserError

    if example == bool(check):
        raise UserError("give exactly one of --example or --check FILE", exit_code=64)
    if example:
        click.echo(example_toml(), nl=False)
        return
    load_config(check)
    click.echo(f"{check}: OK")
