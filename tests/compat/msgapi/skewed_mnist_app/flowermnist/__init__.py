"""flowermnist: a Flower / PyTorch app on skewed MNIST (seeds 000 and 004)."""
