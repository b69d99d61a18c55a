"""cross_device_mnist: workload W2, MNIST over many small clients, a sample trains each round."""
