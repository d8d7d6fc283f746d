"""Small helpers on torch modules shared by the distillation pieces and the models."""
from torch import nn
from torch.nn.parallel import DataParallel, DistributedDataParallel


def bare_module(net: nn.Module) -> nn.Module:
    """The network inside a (Distributed)DataParallel wrapper, or the network itself."""
    return net.module if isinstance(net, (DataParallel, DistributedDataParallel)) else net
