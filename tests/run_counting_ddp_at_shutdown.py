"""``python tests/run_counting_ddp_at_shutdown.py OUT ARGS...``: ``python -m kdplugins.train ARGS`` that appends to OUT,
when the process group is destroyed, how many DistributedDataParallel wrappers are still alive in this process (no
garbage collection of its own: a wrapper alive then is freed only during interpreter finalization, where gloo's
threads can abort the process)."""
import gc
import sys
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

if __name__ == '__main__':
    out = sys.argv[1]
    destroy = dist.destroy_process_group

    def counting_destroy(*args, **kwargs):
        alive = sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects())
        with open(out, 'a') as f:
            f.write(f'{dist.get_rank()} {alive}\n')
        return destroy(*args, **kwargs)

    dist.destroy_process_group = counting_destroy
    sys.argv = ['kdplugins.train', *sys.argv[2:]]
    from kdplugins.train import main
    main()
