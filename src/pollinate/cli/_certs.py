"""``pollinate certs``: development TLS certificates for the link, its nodes and its operators.

``pollinate certs --out DIR`` writes the CA, the link's certificate and client certificates
(mutual TLS); ``pollinate certs revoke --dir DIR NAME`` adds certificates to ``DIR``'s CRL.
"""

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


@click.group(
    "certs",
    invoke_without_command=True,
    short_help="Write development TLS certificates for the link, nodes and operators.",
)
@click.option(
    "--out",
    "out_dir",
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
    help="How many node client certificates to write (node1.pem/node1.key, ...).",
)
@click.option(
    "--operators",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="How many operator client certificates to write (operator1.pem/operator1.key, ...): "
    "for pollinate run/ls/log/stop against a link with --mtls.",
)
@click.option(
    "--signing-keys",
    is_flag=True,
    help="Instead of certificates, write Ed25519 signing key pairs (NAME.key/NAME.pub) for "
    "per-message signing (a link behind a TLS-terminating proxy: --node-keys).",
)
@click.option(
    "--days",
    type=click.IntRange(min=1, max=36500),
    default=365,
    show_default=True,
    help="How long the certificates are valid.",
)
@click.pass_context
def certs_command(
    ctx: click.Context,
    out_dir: Path | None,
    hostnames: tuple[str, ...],
    nodes: int,
    operators: int,
    signing_keys: bool,
    days: int,
) -> None:
    """Write a development CA, a TLS certificate for the link, and client certificates.

    For trying a deployment on your own machines. Each node and operator gets a
    certificate the CA signs (mutual TLS: pollinate link --mtls). In production, use
    certificates from your organisation's CA: the link needs server.pem, server.key and
    ca.pem, the nodes the CA's certificate and their own (see docs/deploy.md).
    """
    if ctx.invoked_subcommand is not None:
        if out_dir is not None:
            raise click.UsageError("--out goes without a subcommand: pollinate certs --out DIR")
        return
    if out_dir is None:
        raise click.UsageError("Missing option '--out'.")
    from ..deploy import DEFAULT_HOSTNAMES, make_dev_certs  # cryptography loads only here

    names = hostnames or DEFAULT_HOSTNAMES
    files = make_dev_certs(
        out_dir, names, nodes=nodes, days=days, operators=operators, signing_keys=signing_keys
    )
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
    console.print("\nNext:")
    for line in _next_steps(files, out_dir, signing_keys):
        console.print(f"  {escape(line)}")


def _next_steps(files: CertFiles, out_dir: Path, signing_keys: bool) -> list[str]:
    """The commands that use the files just written."""
    directory = shlex.quote(shown(out_dir))
    node = f"pollinate node --link HOST:9400 --root-cert {shlex.quote(shown(files.ca_cert))}"
    if signing_keys:
        keys = f" --node-keys {directory}" if files.node_keys else ""
        link = f"pollinate link --certs {directory}{keys} --db link.db"
        if files.node_keys:
            node += f" --key {shlex.quote(shown(files.node_keys[0]))}"
    else:
        link = f"pollinate link --certs {directory} --mtls --db link.db"
        if files.node_keys:
            cert, key = (shlex.quote(shown(p)) for p in (files.node_certs[0], files.node_keys[0]))
            node += f" --cert {cert} --key {key}"
    steps = [link, node]
    steps.append('pollinate run APP_DIR FEDERATION    (a federation with address = "HOST:9400"')
    if files.operator_certs:
        steps[-1] += ", and cert and key = an operator's files)"
    else:
        steps[-1] += ")"
    if not files.node_keys:
        steps.append("(add --nodes N --operators M to also write client certificates)")
    return steps


def _rows(files: CertFiles, hostnames: tuple[str, ...], days: int) -> list[tuple[str, str]]:
    """(file name, what it is) for each file written; clients' files on two lines a role."""
    rows = [
        (
            files.ca_cert.name,
            "the CA's certificate: the link and the nodes trust each other through it",
        ),
        (files.ca_key.name, "the CA's private key: it can sign more certificates, keep it private"),
        (
            files.server_cert.name,
            f"the link's certificate, for {', '.join(hostnames)}; valid {counted(days, 'day')}",
        ),
        (files.server_key.name, "the link's private key"),
    ]
    for role, keys, certs, pubs in (
        ("node", files.node_keys, files.node_certs, files.node_public_keys),
        ("operator", files.operator_keys, files.operator_certs, files.operator_public_keys),
    ):
        if not keys:
            continue
        one = len(keys) == 1
        whose = f"{role} 1's" if one else f"each {role}'s"
        if certs:
            rows.append((_span(certs), f"{whose} client certificate (pollinate:{role}:NAME)"))
            rows.append((_span(keys), "its private key" if one else "their private keys"))
        else:
            rows.append((_span(keys), f"{whose} private signing key"))
            rows.append((_span(pubs), "its public key" if one else "their public keys"))
    return rows


def _span(paths: tuple[Path, ...]) -> str:
    """``node1.key``, ``node1.key node2.key`` or ``node1.key ... node9.key``."""
    if len(paths) <= 2:
        return " ".join(p.name for p in paths)
    return f"{paths[0].name} ... {paths[-1].name}"


@certs_command.command("revoke", short_help="Revoke client certificates: add them to the CRL.")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option(
    "--dir",
    "cert_dir",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The folder with the CA (ca.pem, ca.key) and the certificates (NAME.pem).",
)
def revoke_command(names: tuple[str, ...], cert_dir: Path) -> None:
    """Revoke the certificates NAME.pem in --dir: add them to --dir/revoked.crl.

    A link started with --revoked DIR/revoked.crl reads the file again when it changes
    and refuses these certificates from their next call on (no restart).
    """
    from ..deploy import revoke

    path, certs = revoke(cert_dir, names)
    console = Console(highlight=False, soft_wrap=True)
    for name, cert in zip(names, certs, strict=True):
        console.print(f"revoked {escape(name)} (serial {cert.serial_number:x})")
    console.print(
        f"written to {escape(shown(path))}: a link started with --revoked {escape(shown(path))} "
        "refuses them from their next call"
    )
