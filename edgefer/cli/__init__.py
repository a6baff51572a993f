"""The `edgefer` command line: one click group, each command in its own module, imported lazily.

Lazy loading keeps `edgefer --help` fast and lets a command whose optional dependency is missing
(torch for `train`, tensorrt for `convert --to trt-*`) fail with a one-line hint instead of
breaking every other command. A `UserError` prints one line and exits non-zero; anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from edgefer import __version__
from edgefer.errors import UserError

#: command name -> "module:function" (a click.Command), imported on first use.
COMMANDS: dict[str, str] = {
    "predict": "edgefer.cli.predict:predict",
    "run": "edgefer.cli.run:run",
    "bench": "edgefer.cli.bench:bench",
    "eval": "edgefer.cli.evaluate:eval_cmd",
    "train": "edgefer.cli.train:train_cmd",
    "export": "edgefer.cli.train:export_cmd",
    "calibration": "edgefer.cli.calibration:calibration",
    "convert": "edgefer.cli.convert:convert",
    "doctor": "edgefer.cli.doctor:doctor",
    "listen": "edgefer.cli.listen:listen",
    "config": "edgefer.cli.config:config",
    "install-service": "edgefer.cli.install_service:install_service",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgefer")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Facial emotion recognition with per-emotion intensity, on edge devices."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    try:
        rv = cli.main(args=argv, prog_name="edgefer", standalone_mode=False)
        if isinstance(rv, int) and rv:
            sys.exit(rv)
    except UserError as exc:
        click.echo(f"edgefer: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("edgefer: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(0)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(0)
