"""DP-SGD on every node with Opacus: digits (bundled) or MNIST, the nodes' epsilon reported."""
