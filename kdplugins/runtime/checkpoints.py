"""The pipeline's checkpoint step: the model it built writes its checkpoints whole or stops the run. *Every device*.

kdplugins' models write through :mod:`kdplugins.utils.checkpoint_io` themselves. Any other model (basicsr's
``SRModel`` training a teacher, a host project's model) gets, on this one object and nothing else:

- ``save_network``: :func:`~kdplugins.utils.checkpoint_io.save_network_file` (basicsr's file and content, atomic);
- ``save_training_state``: basicsr's content written atomically when the model inherits basicsr's; the model's own
  otherwise, with a failure turned into :class:`~kdplugins.utils.checkpoint_io.CheckpointWriteError`.
"""
import os
from basicsr.models.base_model import BaseModel
from basicsr.utils.dist_util import master_only

from kdplugins.utils.checkpoint_io import CheckpointWriteError, save_network_file, write_error, write_training_state


def write_checkpoints_whole(model: BaseModel) -> BaseModel:
    """Make ``model`` write its network files and training states whole (see the module docstring)."""
    if getattr(model, 'WRITES_CHECKPOINTS_WHOLE', False):
        return model

    @master_only
    def save_network(net, net_label: str, current_iter, param_key='params') -> None:
        save_network_file(model, net, net_label, current_iter, param_key)

    own_save_training_state = model.save_training_state

    @master_only
    def save_training_state(epoch: int, current_iter: int) -> None:
        if type(model).save_training_state is BaseModel.save_training_state:
            if current_iter != -1:
                write_training_state(model, epoch, current_iter)
            return
        try:
            own_save_training_state(epoch, current_iter)
        except CheckpointWriteError:
            raise
        except Exception as error:  # noqa: B902
            path = os.path.join(model.opt['path']['training_states'], f'{current_iter}.state')
            raise write_error(path, error, model.opt, current_iter) from error

    model.save_network = save_network
    model.save_training_state = save_training_state
    return model
