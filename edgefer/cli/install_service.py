"""`edgefer install-service`: write the systemd unit and a configuration for this machine."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("install-service")
@click.option("--dry-run", is_flag=True, help="Print what would be done and the unit, write nothing.")
@click.option("--user", default="edgefer", show_default=True, help="System user the service runs as (created if missing).")
@click.option("--config-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("/etc/edgefer"),
              show_default=True, help="Where config.toml is written.")
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("/etc/systemd/system"),
              show_default=True, help="Where edgefer.service is written.")
@click.option("--executable", type=click.Path(dir_okay=False, path_type=Path),
              help="The edgefer executable for ExecStart (default: this installation's).")
@click.option("--source", metavar="URI", help="Source URI written into the configuration (default: the platform's camera).")
@click.option("--force", is_flag=True, help="Replace an existing configuration file.")
@click.option("--create-user/--no-create-user", default=True, show_default=True, help="Create the user if it does not exist.")
def install_service(dry_run, user, config_dir, unit_dir, executable, source, force, create_user):
    """Install edgefer as a systemd service.

    \b
    Examples:
      edgefer install-service --dry-run
      sudo edgefer install-service --source v4l2:///dev/video0
      sudo systemctl daemon-reload && sudo systemctl enable --now edgefer
    """
    from edgefer.systemd.install import install, plan

    p = plan(executable.resolve() if executable else None, user, config_dir.resolve(), unit_dir.resolve(), source, force,
             create_user)
    prefix = "would " if dry_run else ""
    if dry_run:
        click.echo(f"# {p.unit_path}")
        click.echo(p.unit_text)
    else:
        install(p)
    for action in p.actions:
        click.echo(action if action.startswith("note:") else prefix + action)
    if not dry_run:
        click.echo("next: systemctl daemon-reload && systemctl enable --now edgefer; logs: journalctl -u edgefer -f")
