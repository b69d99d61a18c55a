"""cifar10_tutorial: the classic NumPyClient tutorial, a small CNN on CIFAR-10 over 10 clients."""
