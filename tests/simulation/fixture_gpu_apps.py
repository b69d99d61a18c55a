"""A ClientApp that tells which GPUs its worker was given, as 'fixture_gpu_apps:NAME'."""

import os

from pollinate import ClientApp, ConfigRecord, MetricRecord, RecordDict

reports_gpu = ClientApp()
WARMED_ON: list[str] = []
"""The device each warm-up in this process was given."""


@reports_gpu.warmup()
def _warm(context):
    WARMED_ON.append(context.node_config.get("device", "none"))


@reports_gpu.query()
def _report(msg, context):
    """Its worker's CUDA_VISIBLE_DEVICES and pid, and the device its context names."""
    seen = ConfigRecord(
        {
            "cuda-visible-devices": os.environ.get("CUDA_VISIBLE_DEVICES", "unset"),
            "device": context.node_config.get("device", "none"),
            "warmed-on": ",".join(WARMED_ON) or "not warmed",
        }
    )
    return msg.reply(RecordDict({"seen": seen, "metrics": MetricRecord({"pid": os.getpid()})}))


@reports_gpu.train()
def _die(msg, context):
    """Exit at once: the worker dies mid-task and must be replaced."""
    os._exit(3)
