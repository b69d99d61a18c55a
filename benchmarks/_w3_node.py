"""A W3 node in its own process: adds 1.0 to every array it gets and replies.

The node whose id the run config names as ``slow-node`` first sleeps ``slow-s`` seconds
(``deploy_transfer.py --slow-first``: a straggler at the head of the send order).

Started by ``deploy_transfer.py``, one process per node. It serves the link at ADDRESS until
the link says goodbye, then prints one JSON line on stdout: its resident memory after the
imports (``baseline_kb``), the peak resident memory of the whole process (``peak_kb``, the
kernel's VmHWM) and how many train messages it answered.

usage: python benchmarks/_w3_node.py ADDRESS [--ca CA_PEM] [--chunk-size BYTES]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pollinate import ArrayRecord, ClientApp, Context, Message, MetricRecord, RecordDict
from pollinate.deploy import Backoff, channel_credentials, run_node

app = ClientApp()
answered = 0


@app.train()
def add_one(msg: Message, context: Context) -> Message:
    """W3's client: every array plus 1.0 (same dtype), weight 1."""
    global answered
    answered += 1
    if context.run_config.get("slow-node") == context.node_id:
        time.sleep(float(context.run_config.get("slow-s", 0.0)))
    arrays = ArrayRecord({name: a.numpy() + 1.0 for name, a in msg.content.arrays().items()})
    metrics = MetricRecord({"num-examples": 1})
    return msg.reply(RecordDict({"arrays": arrays, "metrics": metrics}))


def status_kb(field: str) -> int:
    """A ``VmRSS``/``VmHWM``-style field of /proc/self/status, in KiB (0 where there is none)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("address", help="the link's HOST:PORT")
    parser.add_argument("--ca", type=Path, help="CA certificate: connect with TLS")
    parser.add_argument("--chunk-size", type=int, default=1 << 20)
    args = parser.parse_args()
    baseline_kb = status_kb("VmRSS")
    credentials = None if args.ca is None else channel_credentials(args.ca)
    run_node(
        args.address,
        app,
        credentials=credentials,
        chunk_size=args.chunk_size,
        backoff=Backoff(initial_s=0.05, max_s=0.5, give_up_s=30),
    )
    peak = {"baseline_kb": baseline_kb, "peak_kb": status_kb("VmHWM"), "answered": answered}
    print(json.dumps(peak), flush=True)


if __name__ == "__main__":
    main()
