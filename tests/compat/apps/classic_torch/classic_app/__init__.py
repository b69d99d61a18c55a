"""classic_app: Flower's classic NumPyClient and strategy API, run as an app."""
