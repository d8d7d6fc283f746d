"""The test run, top to bottom: what ``python -m kdplugins.test -opt X.yml`` does.

basicsr 1.4.2's ``basicsr.test.test_pipeline`` (same steps, order, logs and ``results/<name>`` files) with kdplugins'
steps called where they run: ``--import`` modules and ``custom_imports`` before the options are checked
(:func:`~kdplugins.runtime.option_checks.check_options`), the folders without the ``path`` keys that are options
(:func:`~kdplugins.runtime.compat.make_exp_dirs`), and a new log file also for a second run in the same process.
"""
import sys
import torch
from basicsr.data import build_dataloader, build_dataset
from basicsr.models import build_model
from basicsr.utils import get_env_info, get_time_str
from basicsr.utils.options import dict2str, parse_options
from os import path as osp

from kdplugins.pipeline.train import start_root_logger
from kdplugins.runtime import distributed
from kdplugins.runtime.compat import make_exp_dirs
from kdplugins.runtime.custom_imports import import_from_command_line, import_from_options
from kdplugins.runtime.option_checks import check_options
from kdplugins.runtime.option_file import check_option_file


def test_pipeline(root_path: str):
    """Test as the option file given on the command line (``-opt``) says; returns the model."""
    import_from_command_line()
    check_option_file(sys.argv)
    opt, _ = parse_options(root_path, is_train=False)
    import_from_options(opt)
    check_options(opt)
    torch.backends.cudnn.benchmark = True
    make_exp_dirs(opt)
    logger = start_root_logger(osp.join(opt['path']['log'], f"test_{opt['name']}_{get_time_str()}.log"))
    logger.info(get_env_info())
    for line in distributed.description():
        logger.info(line)
    logger.info(dict2str(opt))
    test_loaders = []
    for _, dataset_opt in sorted(opt['datasets'].items()):
        test_set = build_dataset(dataset_opt)
        test_loader = build_dataloader(
            test_set, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'], sampler=None, seed=opt['manual_seed'])
        logger.info(f"Number of test images in {dataset_opt['name']}: {len(test_set)}")
        test_loaders.append(test_loader)
    model = build_model(opt)
    for test_loader in test_loaders:
        test_set_name = test_loader.dataset.opt['name']
        logger.info(f'Testing {test_set_name}...')
        model.validation(test_loader, current_iter=opt['name'], tb_logger=None, save_img=opt['val']['save_img'])
    return model


test_pipeline.__test__ = False  # not a pytest test, although its name starts with test_
