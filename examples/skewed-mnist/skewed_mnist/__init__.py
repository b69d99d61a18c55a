"""skewed_mnist: workload W1, three MNIST clients that each never see three digits."""
