"""Other frameworks' names mapped onto pollinate's one core API (``compat.flwr``: Flower)."""
