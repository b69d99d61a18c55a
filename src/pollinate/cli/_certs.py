"""``pollinate certs``: development TLS certificates for the link and identity keys for nodes."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape

from ._display import counted, shown

if TYPE_CHECKING:
    from ..deploy import CertFiles

__all__ = ["certs_command"]


@click.command("certs", short_help="Write development TLS certificates and node keys.")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The folder to write into (created if needed; existing files are never overwritten).",
)
@click.option(
    "--hostname",
    "hostnames",
    multiple=True,
    metavar="NAME",
    help="A DNS name or IP address nodes reach the link by; repeat for several "
    "(default: localhost and 127.0.0.1).",
)
@click.option(
    "--nodes",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="How many node identity key pairs to write (node1.key/node1.pub, ...).",
)
@click.option(
    "--days",
    type=click.IntRange(min=1, max=36500),
    default=365,
    show_default=True,
    help="How long the certificates are valid.",
)
def certs_command(out_dir: Path, hostnames: tuple[str, ...], nodes: int, days: int) -> None:
    """Write a development CA, a TLS certificate for the link and node identity keys.

    For trying a deployment on your own machines. In production, use certificates from your
    organisation's CA: the link needs server.pem and server.key, the nodes the CA's
    certificate (see docs/deploy.md).
    """
    from ..deploy import DEFAULT_HOSTNAMES, make_dev_certs  # cryptography loads only here

    names = hostnames or DEFAULT_HOSTNAMES
    files = make_dev_certs(out_dir, names, nodes=nodes, days=days)
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"Wrote development certificates to [bold]{escape(shown(out_dir))}[/]:\n")
    rows = _rows(files, names, days)
    width = max(len(name) for name, _ in rows) + 3
    for name, meaning in rows:
        console.print(f"  {escape(name):<{width}}{escape(meaning)}")
    console.print(
        "\n[bold yellow]warning:[/] these are development certificates, not for production: "
        "there, use your organisation's CA (docs/deploy.md)"
    )
    directory = shlex.quote(shown(out_dir))
    node = f"pollinate node --link HOST:9400 --root-cert {shlex.quote(shown(files.ca_cert))}"
    if files.node_keys:
        node += f" --key {shlex.quote(shown(files.node_keys[0]))}"
    console.print("\nNext:")
    keys = f" --node-keys {directory}" if files.node_keys else ""
    console.print(f"  {escape(f'pollinate link --certs {directory}{keys} --db link.db')}")
    console.print(f"  {escape(node)}")
    console.print('  pollinate run APP_DIR FEDERATION    (a federation with address = "HOST:9400")')
    if not files.node_keys:
        console.print("  (add --nodes N to also write node identity keys)")


def _rows(files: CertFiles, hostnames: tuple[str, ...], days: int) -> list[tuple[str, str]]:
    """(file name, what it is) for each file written; node files on two lines."""
    rows = [
        (files.ca_cert.name, "the CA's certificate: nodes trust the link through it"),
        (files.ca_key.name, "the CA's private key: it can sign more certificates, keep it private"),
        (
            files.server_cert.name,
            f"the link's certificate, for {', '.join(hostnames)}; valid {counted(days, 'day')}",
        ),
        (files.server_key.name, "the link's private key"),
    ]
    if files.node_keys:
        one = len(files.node_keys) == 1
        whose = "node 1's private identity key" if one else "each node's private identity key"
        rows.append((_span(files.node_keys), whose))
        rows.append(
            (_span(files.node_public_keys), "its public key" if one else "their public keys")
        )
    return rows


def _span(paths: tuple[Path, ...]) -> str:
    """``node1.key``, ``node1.key node2.key`` or ``node1.key ... node9.key``."""
    if len(paths) <= 2:
        return " ".join(p.name for p in paths)
    return f"{paths[0].name} ... {paths[-1].name}"
