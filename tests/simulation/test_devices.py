from pollinate.context import Context
from pollinate.simulation._devices import CPU, DEVICE_KEY, GPU, with_device


def test_with_device_sets_the_key_and_keeps_the_rest() -> None:
    context = Context(1, 2, {"partition-id": 0}, {"lr": 0.1})
    placed = with_device(context, GPU)
    assert placed.node_config == {"partition-id": 0, DEVICE_KEY: "cuda:0"}
    assert placed.run_config == {"lr": 0.1} and placed.state is context.state
    assert context.node_config == {"partition-id": 0}  # the original is untouched


def test_a_device_the_node_config_names_is_kept() -> None:
    context = Context(1, 2, {DEVICE_KEY: CPU})
    assert with_device(context, CPU) is context
    assert with_device(context, GPU) is context
