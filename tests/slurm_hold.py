"""A validation metric that holds a run at a known point, imported by the Slurm tests' option files
(``custom_imports: [slurm_hold]``): while the file named by ``$KDPLUGINS_TEST_HOLD`` exists, rank 0's first
validation (right after the checkpoint of that iteration is written) waits, after creating ``<that file>.reached``, so
that the test cancels the job (``scancel``) mid-run with a checkpoint on disk and before the next. Without the
variable it returns 0 at once and changes nothing (metrics do not touch the weights)."""
import os
import time
from basicsr.utils.registry import METRIC_REGISTRY


@METRIC_REGISTRY.register()
def hold_while_file_exists(img, img2, **kwargs) -> float:
    hold = os.environ.get('KDPLUGINS_TEST_HOLD')
    if hold and os.path.exists(hold):
        open(f'{hold}.reached', 'w').close()
        while os.path.exists(hold):
            time.sleep(0.1)
    return 0.0
