"""``python tests/run_with_start_method.py METHOD MODULE ARGS...``: ``python -m MODULE ARGS`` with the multiprocessing
start method set to METHOD first, as it is by default on macOS and Windows (spawn) and on Linux from Python 3.14
(forkserver). basicsr's ``init_dist`` keeps a start method that is already set."""
import multiprocessing
import runpy
import sys

if __name__ == '__main__':
    method, module = sys.argv[1], sys.argv[2]
    multiprocessing.set_start_method(method)
    sys.argv = [module, *sys.argv[3:]]
    runpy.run_module(module, run_name='__main__', alter_sys=True)
