"""mlp_app: a point classifier trained with FedAvg through Flower's message API."""
