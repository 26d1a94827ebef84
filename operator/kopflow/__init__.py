"""kopflow: Kubernetes-native workflows, with the same manifest runnable on a laptop."""

__version__ = "0.1.0"
