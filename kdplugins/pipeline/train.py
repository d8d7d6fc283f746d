"""The training run, top to bottom: what ``python -m kdplugins.train -opt X.yml`` does, in the order it does it.

It is basicsr 1.4.2's ``basicsr.train.train_pipeline`` (same steps, same order, same logs, files and checkpoints),
with kdplugins' steps called where they run instead of being patched into basicsr:

1. options: ``--import`` modules, the option file as written (YAML, duplicate keys, numbers after ``--force_yml``:
   :func:`~kdplugins.runtime.option_file.check_option_file`), basicsr's ``parse_options`` (which also starts the
   process group of ``torchrun`` / ``--launcher``), the option file's ``custom_imports``, then every option checked
   at once (:func:`~kdplugins.runtime.option_checks.check_options`);
2. the experiment folder locked for this run (:func:`~kdplugins.runtime.run_lock.lock_experiment`);
3. the training state to resume from: one lookup, that skips a broken newest state under ``--auto_resume``
   (:func:`~kdplugins.runtime.resume.load_resume_state`), then basicsr's folders and option-file copy;
4. basicsr's loggers (a new log file per run, also for a second run in the same process);
5. the data: basicsr's datasets and dataloaders, with the training set drawing each sample's augmentations from its
   own seed and the sampler skipping what the resumed epoch had done (:mod:`~kdplugins.runtime.exact_resume`);
6. the model (basicsr's ``build_model``), made to write its checkpoints whole
   (:func:`~kdplugins.runtime.checkpoints.write_checkpoints_whole`), then resumed;
7. basicsr's training loop: learning rate, ``feed_data``, ``optimize_parameters``, logging, checkpoints, validation;
   the latest networks and a last validation at the end.

The current directory is where ``--auto_resume`` looks for states (as in basicsr); ``root_path`` is where
``experiments/`` and ``tb_logger/`` go. *Every device*.
"""
import datetime
import logging
import math
import sys
import time
import torch
from basicsr.data import build_dataloader, build_dataset
from basicsr.data.prefetch_dataloader import CPUPrefetcher, CUDAPrefetcher
from basicsr.models import build_model
from basicsr.train import init_tb_loggers
from basicsr.utils import AvgTimer, MessageLogger, get_env_info, get_root_logger, get_time_str
from basicsr.utils import logger as basicsr_logger
from basicsr.utils import mkdir_and_rename
from basicsr.utils.options import copy_opt_file, dict2str, parse_options
from os import path as osp
from typing import List, Optional

from kdplugins.runtime import distributed
from kdplugins.runtime.checkpoints import write_checkpoints_whole
from kdplugins.runtime.compat import make_exp_dirs
from kdplugins.runtime.custom_imports import import_from_command_line, import_from_options
from kdplugins.runtime.exact_resume import PerSampleSeededDataset, ResumableEnlargedSampler, skip_resumed_samples
from kdplugins.runtime.option_checks import check_options, warn_about_archiving
from kdplugins.runtime.option_file import check_option_file
from kdplugins.runtime.resume import load_resume_state
from kdplugins.runtime.run_lock import lock_experiment
from kdplugins.runtime.samples import NamedSamples


def train_pipeline(root_path: str, argv: Optional[List[str]] = None):
    """Train as the option file given on the command line (``-opt``, basicsr's arguments; ``argv`` instead of
    ``sys.argv[1:]`` when given) says; returns the model."""
    if argv is not None:
        saved, sys.argv = sys.argv, [sys.argv[0], *argv]
        try:
            return train_pipeline(root_path)
        finally:
            sys.argv = saved
    # 1. options
    import_from_command_line()
    check_option_file(sys.argv)
    opt, args = parse_options(root_path, is_train=True)
    opt['root_path'] = root_path
    import_from_options(opt)
    check_options(opt)
    # 2. this run's experiment folder
    lock = lock_experiment(opt)
    try:
        warn_about_archiving(opt)
        torch.backends.cudnn.benchmark = True
        # 3. resume, folders
        resume_warnings: List[str] = []
        resume_state = load_resume_state(opt, resume_warnings)
        if resume_state is None:
            make_exp_dirs(opt)
            if opt['logger'].get('use_tb_logger') and 'debug' not in opt['name'] and opt['rank'] == 0:
                mkdir_and_rename(osp.join(opt['root_path'], 'tb_logger', opt['name']))
        copy_opt_file(args.opt, opt['path']['experiments_root'])
        # 4. loggers
        logger = start_root_logger(osp.join(opt['path']['log'], f"train_{opt['name']}_{get_time_str()}.log"))
        logger.info(get_env_info())
        for line in distributed.description():  # the backend actually used (gloo without CUDA), timeout
            logger.info(line)
        logger.info(dict2str(opt))
        for warning in resume_warnings:
            logger.warning(warning)
        tb_logger = init_tb_loggers(opt)
        # 5. data
        train_loader, train_sampler, val_loaders, total_epochs, total_iters = create_train_val_dataloader(
            opt, logger, resume_state)
        # 6. model
        model = write_checkpoints_whole(build_model(opt))
        if resume_state:
            model.resume_training(resume_state)  # optimizers, schedulers and what the model adds
            logger.info(f"Resuming training from epoch: {resume_state['epoch']}, iter: {resume_state['iter']}.")
            start_epoch, current_iter = resume_state['epoch'], resume_state['iter']
        else:
            start_epoch, current_iter = 0, 0
        # 7. training loop
        train_loop(opt, model, train_loader, train_sampler, val_loaders, start_epoch, current_iter, total_epochs,
                   total_iters, logger, tb_logger)
        return model
    finally:
        if lock is not None:
            lock.release()


def start_root_logger(log_file: str) -> logging.Logger:
    """basicsr's root logger writing to ``log_file``. basicsr sets its logger up once per process and ignores later
    log files, so the handlers of an earlier run in this process (a host project or a test training twice) are
    closed first."""
    logger = logging.getLogger('basicsr')
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)
    basicsr_logger.initialized_logger.pop('basicsr', None)
    return get_root_logger(logger_name='basicsr', log_level=logging.INFO, log_file=log_file)


def create_train_val_dataloader(opt: dict, logger: logging.Logger, resume_state: Optional[dict]):
    """basicsr's ``create_train_val_dataloader`` (same loaders, statistics and logs), the training set and sampler
    those of exact resume, every set naming a sample that cannot be read (:mod:`~kdplugins.runtime.samples`)."""
    train_loader, train_sampler, val_loaders = None, None, []
    for phase, dataset_opt in opt['datasets'].items():
        if phase == 'train':
            dataset_enlarge_ratio = dataset_opt.get('dataset_enlarge_ratio', 1)
            train_set = PerSampleSeededDataset(build_dataset(dataset_opt), dataset_opt.get('skip_unreadable', False))
            train_sampler = ResumableEnlargedSampler(train_set, opt['world_size'], opt['rank'], dataset_enlarge_ratio)
            train_loader = build_dataloader(
                train_set,
                dataset_opt,
                num_gpu=opt['num_gpu'],
                dist=opt['dist'],
                sampler=train_sampler,
                seed=opt['manual_seed'])
            skip_resumed_samples(train_loader, train_sampler, resume_state, opt['manual_seed'], logger)
            num_iter_per_epoch = math.ceil(
                len(train_set) * dataset_enlarge_ratio / (dataset_opt['batch_size_per_gpu'] * opt['world_size']))
            total_iters = int(opt['train']['total_iter'])
            total_epochs = math.ceil(total_iters / num_iter_per_epoch)
            logger.info('Training statistics:'
                        f'\n\tNumber of train images: {len(train_set)}'
                        f'\n\tDataset enlarge ratio: {dataset_enlarge_ratio}'
                        f'\n\tBatch size per gpu: {dataset_opt["batch_size_per_gpu"]}'
                        f'\n\tWorld size (gpu number): {opt["world_size"]}'
                        f'\n\tRequire iter number per epoch: {num_iter_per_epoch}'
                        f'\n\tTotal epochs: {total_epochs}; iters: {total_iters}.')
        elif phase.split('_')[0] == 'val':
            val_set = NamedSamples(build_dataset(dataset_opt))
            val_loader = build_dataloader(
                val_set, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'], sampler=None, seed=opt['manual_seed'])
            logger.info(f'Number of val images/folders in {dataset_opt["name"]}: {len(val_set)}')
            val_loaders.append(val_loader)
        else:
            raise ValueError(f'Dataset phase {phase} is not recognized.')
    return train_loader, train_sampler, val_loaders, total_epochs, total_iters


def train_loop(opt: dict, model, train_loader, train_sampler, val_loaders: list, start_epoch: int, current_iter: int,
               total_epochs: int, total_iters: int, logger: logging.Logger, tb_logger) -> None:
    """basicsr's training loop, unchanged: per iteration the learning rate, ``feed_data``, ``optimize_parameters``,
    the log line every ``print_freq``, ``model.save`` every ``save_checkpoint_freq``, validation every ``val_freq``;
    at the end the latest networks and a last validation."""
    msg_logger = MessageLogger(opt, current_iter, tb_logger)
    prefetch_mode = opt['datasets']['train'].get('prefetch_mode')
    if prefetch_mode is None or prefetch_mode == 'cpu':
        prefetcher = CPUPrefetcher(train_loader)
    elif prefetch_mode == 'cuda':
        prefetcher = CUDAPrefetcher(train_loader, opt)
        logger.info(f'Use {prefetch_mode} prefetch dataloader')
        if opt['datasets']['train'].get('pin_memory') is not True:
            raise ValueError('Please set pin_memory=True for CUDAPrefetcher.')
    else:
        raise ValueError(f"Wrong prefetch_mode {prefetch_mode}. Supported ones are: None, 'cuda', 'cpu'.")

    logger.info(f'Start training from epoch: {start_epoch}, iter: {current_iter}')
    data_timer, iter_timer = AvgTimer(), AvgTimer()
    start_time = time.time()
    for epoch in range(start_epoch, total_epochs + 1):
        train_sampler.set_epoch(epoch)
        prefetcher.reset()
        train_data = prefetcher.next()
        while train_data is not None:
            data_timer.record()
            current_iter += 1
            if current_iter > total_iters:
                break
            model.update_learning_rate(current_iter, warmup_iter=opt['train'].get('warmup_iter', -1))
            model.feed_data(train_data)
            model.optimize_parameters(current_iter)
            iter_timer.record()
            if current_iter == 1:
                msg_logger.reset_start_time()  # a more accurate eta (not after a resume)
            if current_iter % opt['logger']['print_freq'] == 0:
                log_vars = {'epoch': epoch, 'iter': current_iter}
                log_vars.update({'lrs': model.get_current_learning_rate()})
                log_vars.update({'time': iter_timer.get_avg_time(), 'data_time': data_timer.get_avg_time()})
                log_vars.update(model.get_current_log())
                msg_logger(log_vars)
            if current_iter % opt['logger']['save_checkpoint_freq'] == 0:
                logger.info('Saving models and training states.')
                model.save(epoch, current_iter)
            if opt.get('val') is not None and (current_iter % opt['val']['val_freq'] == 0):
                if len(val_loaders) > 1:
                    logger.warning('Multiple validation datasets are *only* supported by SRModel.')
                for val_loader in val_loaders:
                    model.validation(val_loader, current_iter, tb_logger, opt['val']['save_img'])
            data_timer.start()
            iter_timer.start()
            train_data = prefetcher.next()

    consumed_time = str(datetime.timedelta(seconds=int(time.time() - start_time)))
    logger.info(f'End of training. Time consumed: {consumed_time}')
    logger.info('Save the latest model.')
    model.save(epoch=-1, current_iter=-1)  # -1 stands for the latest
    if opt.get('val') is not None:
        for val_loader in val_loaders:
            model.validation(val_loader, current_iter, tb_logger, opt['val']['save_img'])
    if tb_logger:
        tb_logger.close()
