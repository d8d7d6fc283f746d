"""The papers' table rows as BasicSR option files: ``options/train/paper/*.yml`` are built here from the tables' data
(:mod:`kdplugins.experiments.paper_tables`: rows and published numbers, networks and teacher checkpoints, schedules,
what a paper spells out) and the methods' losses and weights (:mod:`kdplugins.experiments.method_options`, the builder
the reproduction uses too). ``python scripts/make_paper_options.py`` writes one file per row, and for each row whose
run ends in a plain network a test file scoring it on the five benchmarks (``options/test/paper/``);
``tests/test_paper_recipes.py`` checks that the committed files are exactly what this module writes, that basicsr
parses them and that each model builds, loads its teacher and trains.
"""
import copy
import os
import yaml
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from kdplugins.experiments.method_options import METHODS, MethodOptions, method_options
from kdplugins.experiments.paper_tables import (AUGKD_NO_ZOOM_OUT, AUGKD_T2, AUGKD_T3, AUGKD_T10, BACKBONES, CSD_T1,
                                                CSD_T1_TEACHER, MEMSR_STUDENT, MEMSR_T4, MEMSR_TEACHER, PAPER_SETTINGS,
                                                ROW_METHODS, SCALES, SCHEDULES, TABLE11_SECONDS_PER_STEP)
from kdplugins.models.augkd_model import AUGKD_OPTIONS
from kdplugins.utils.declared_options import defaults

DATA_README = 'docs/paper_recipes.md#preparing-the-data'


@dataclass(frozen=True)
class Row:
    """One table row at one scale: the unit of one option file."""
    paper: str  # AugKD, CSD, MemSR (whose schedule it follows: see schedule_of)
    table: str  # e.g. 'AugKD Table 2'
    backbone: str  # EDSR, RCAN, SwinIR, MemSR
    method: str  # a key of METHODS or of ROW_METHODS
    scale: int
    numbers: Optional[Tuple[float, float, float, float]]  # Set5 PSNR/SSIM, Urban100 PSNR/SSIM; None: not reported
    also: str = ''  # other table rows the same run reproduces

    @property
    def name(self) -> str:
        return experiment_name(self.method, self.backbone, self.scale)

    @property
    def file_name(self) -> str:
        return f'train_{self.method}_{self.backbone}_x{self.scale}.yml'

    @property
    def test_file_name(self) -> str:
        return f'test_{self.method}_{self.backbone}_x{self.scale}.yml'


def experiment_name(method: str, backbone: str, scale: int) -> str:
    """``name`` of a run (its ``experiments/<name>`` folder): prefixed so as not to collide with other option files."""
    return f'paper_{method}_{backbone}_x{scale}'


def schedule_of(row: Row) -> dict:
    """AugKD's baselines follow AugKD App. A.1, except CSD whose original settings the paper keeps (App. A.1)."""
    if row.method in ('CSD', 'JT', 'Baseline'):
        return SCHEDULES['CSD']
    return SCHEDULES[row.paper]


def augkd_rows() -> List[Row]:
    rows = []
    for table, backbone, numbers in (('AugKD Table 2', 'EDSR', AUGKD_T2), ('AugKD Table 3', 'RCAN', AUGKD_T3),
                                     ('AugKD Table 10', 'SwinIR', AUGKD_T10)):
        for scale in SCALES:
            for method, values in numbers[scale].items():
                also = f'CSD Table 1 "CSD" x{scale}' if method == 'CSD' and scale in CSD_T1 else ''
                rows.append(Row('AugKD', table, backbone, method, scale, values, also))
    return rows


def csd_rows() -> List[Row]:
    """CSD Table 1 rows not already written for AugKD Table 2 (its CSD rows are the same runs)."""
    return [
        Row('CSD', 'CSD Table 1', 'EDSR', method, scale, CSD_T1[scale][method]) for scale in sorted(CSD_T1)
        for method in ('Baseline', 'JT')
    ]


def memsr_rows() -> List[Row]:
    rows = []
    for scale in SCALES:
        rows.append(Row('MemSR', 'MemSR Table 4', 'MemSR', 'TeacherM', scale, None))
        rows.append(Row('MemSR', 'MemSR Table 4', 'MemSR', 'PlainM', scale, MEMSR_T4[scale]))
    return rows


PAPER_ROWS = augkd_rows() + csd_rows() + memsr_rows()


# ---------------------------------------------------------------------------------------------------------------------
# the method of a row: the one builder, with what the paper spells out
def network(backbone: str, role: str, scale: int) -> dict:
    """``network_g`` / ``network_t`` of a backbone (role 'teacher' or 'student') at ``scale``."""
    if backbone == 'MemSR':
        return dict(MEMSR_TEACHER if role == 'teacher' else MEMSR_STUDENT, upscale=scale)
    return dict(copy.deepcopy(BACKBONES[backbone][role]), upscale=scale)


def teacher_checkpoint(backbone: str, scale: int) -> str:
    spec = BACKBONES[backbone]
    return spec['checkpoint'].format(scale=scale, tag=spec['checkpoint_tags'].get(scale, ''))


def tap_pairs(backbone: str, taps: str) -> List[Tuple[str, str]]:
    """(student_layer, teacher_layer) module names: the end of the body, or its thirds and end (FAKD)."""
    if taps == 'end':
        return [('body', 'body')]
    spec = BACKBONES[backbone]
    pairs = []
    for fraction in (1 / 3, 2 / 3):
        student = round(spec['student_units'] * fraction) - 1
        teacher = round(spec['teacher_units'] * fraction) - 1
        pairs.append((f'body.{student}', f'body.{teacher}'))
    return pairs + [('body', 'body')]


def memsr_init_path(scale: int) -> str:
    return f'experiments/pretrained/paper_MemSR_init_PlainM_x{scale}.pth'


def row_options(row: Row) -> MethodOptions:
    """The model and losses of a row: its method (:data:`ROW_METHODS`) through
    :func:`~kdplugins.experiments.method_options.method_options`, on the backbone's taps, with the paper's settings
    (:data:`PAPER_SETTINGS`; AugKD: the model's augmentation defaults, zoom-out off for SwinIR; MemSR: the bridges of
    the row's winning initialization)."""
    method = ROW_METHODS.get(row.method, row.method)
    taps = tap_pairs(row.backbone, METHODS[method]['taps']) if METHODS[method].get('taps') else ()
    settings = copy.deepcopy(PAPER_SETTINGS.get(row.method, {}))
    if method == 'AugKD':
        settings['augkd'] = defaults(AUGKD_OPTIONS)
        if row.backbone in AUGKD_NO_ZOOM_OUT:
            settings['augkd']['zoom_out'] = False
    if method == 'MemSR':
        settings['memsr'] = {'bridges': memsr_init_path(row.scale)}
    return method_options(method, taps, **settings)


# ---------------------------------------------------------------------------------------------------------------------
# option sections
def train_dataset(scale: int, schedule: dict, dataset_type: Optional[str]) -> dict:
    gt_size = schedule.get('gt_size') or schedule['lq_size'] * scale
    return {
        'name': 'DIV2K',
        'type': dataset_type or 'PairedImageDataset',
        'dataroot_gt': 'datasets/DIV2K/DIV2K_train_HR_sub.lmdb',
        'dataroot_lq': f'datasets/DIV2K/DIV2K_train_LR_bicubic_X{scale}_sub.lmdb',
        'filename_tmpl': '{}',
        'io_backend': {
            'type': 'lmdb'
        },
        'gt_size': gt_size,
        'use_hflip': True,
        'use_rot': True,
        'num_worker_per_gpu': 6,
        'persistent_workers': True,
        'batch_size_per_gpu': schedule['batch'],
        'dataset_enlarge_ratio': 1,
        'prefetch_mode': None
    }


def val_dataset(scale: int) -> dict:
    return {
        'name': 'Set5',
        'type': 'PairedImageDataset',
        'dataroot_gt': 'datasets/Set5/GTmod12',
        'dataroot_lq': f'datasets/Set5/LRbicx{scale}',
        'io_backend': {
            'type': 'disk'
        }
    }


def val_options(scale: int, **extra) -> dict:
    metric = {'crop_border': scale, 'test_y_channel': True}
    return {
        'val_freq': 5000,
        'save_img': False,
        **extra, 'metrics': {
            'psnr': dict(type='calculate_psnr', **metric),
            'ssim': dict(type='calculate_ssim', **metric)
        }
    }


def optimizer(schedule: dict) -> dict:
    return {'type': 'Adam', 'lr': schedule['lr'], 'betas': list(schedule['betas']), 'eps': schedule['eps']}


def path_options(row: Row, model_type: str) -> dict:
    schedule = schedule_of(row)
    path = {}
    if model_type in ('KDModel', 'AugKDModel', 'CrossKDModel'):
        path.update({
            'pretrain_network_t': teacher_checkpoint(row.backbone, row.scale),
            'param_key_t': BACKBONES[row.backbone]['param_key'],
            'strict_load_t': True
        })
    if model_type == 'MemSRModel':
        path.update({
            'pretrain_network_t': f'experiments/{experiment_name("TeacherM", "MemSR", row.scale)}/models/'
            'net_g_latest.pth',
            'param_key_t': 'params',
            'strict_load_t': True
        })
    path.update(student_init(row, schedule))
    path['resume_state'] = None
    return path


def student_init(row: Row, schedule: dict) -> dict:
    """``pretrain_network_g``: the x2 run of the same row (AugKD App. A.1), EDSR-L for CSD (Algorithm 1's
    pre-trained f_t), the winning initialization for MemSR, else none."""
    if row.method in ('CSD', 'JT'):
        return {
            'pretrain_network_g': teacher_checkpoint('EDSR', row.scale),
            'param_key_g': 'params',
            'strict_load_g': True
        }
    if row.method == 'PlainM':
        return {'pretrain_network_g': memsr_init_path(row.scale), 'param_key_g': 'params', 'strict_load_g': True}
    if row.scale in schedule['init_from_x2']:
        x2_run = experiment_name(row.method, row.backbone, 2)
        return {
            'pretrain_network_g': f'experiments/{x2_run}/models/net_g_latest.pth',
            'param_key_g': 'params',
            'strict_load_g': False
        }
    return {'pretrain_network_g': None, 'strict_load_g': True}


def networks(row: Row, model_type: str) -> dict:
    if row.method in ('CSD', 'JT'):
        return {'network_g': dict(network('EDSR', 'teacher', row.scale), type='SlimEDSR')}
    if row.method == 'TeacherM':
        return {'network_g': network('MemSR', 'teacher', row.scale)}
    nets = {'network_g': network(row.backbone, 'student', row.scale)}
    if model_type != 'SRModel':
        nets['network_t'] = network(row.backbone, 'teacher', row.scale)
    return nets


def train_options(row: Row, method: MethodOptions) -> dict:
    schedule = schedule_of(row)
    scheduler = schedule['teacher_scheduler'] if row.method == 'TeacherM' else schedule['scheduler']
    return {
        'ema_decay': 0,
        'optim_g': optimizer(schedule),
        'scheduler': dict(scheduler),
        'total_iter': schedule['total_iter'],
        'warmup_iter': -1,
        **method.train
    }


def options(row: Row) -> dict:
    """The full option dict of one row."""
    method = row_options(row)
    schedule = schedule_of(row)
    val_extra = {'width_mult': method.train['csd']['width_mult']} if 'csd' in method.train else {}
    return {
        'name': row.name,
        'model_type': method.model_type,
        'scale': row.scale,
        'num_gpu': 'auto',
        'manual_seed': schedule['manual_seed'],
        'datasets': {
            'train': train_dataset(row.scale, schedule, method.dataset_type),
            'val': val_dataset(row.scale)
        },
        **networks(row, method.model_type), 'path': path_options(row, method.model_type),
        'train': train_options(row, method),
        'val': val_options(row.scale, **val_extra),
        'logger': {
            'print_freq': 100,
            'save_checkpoint_freq': 5000,
            'use_tb_logger': True
        },
        'dist_params': {
            'backend': 'nccl',
            'port': 29500
        }
    }


# ---------------------------------------------------------------------------------------------------------------------
# the benchmark table of a trained row
BENCHMARKS = ('Set5', 'Set14', 'B100', 'Urban100', 'Manga109')


def has_benchmark_file(row: Row) -> bool:
    """Rows whose run ends in the network they report: all but CSD / J-T, whose student is cut out of the slimmable
    network first (scripts/extract_csd_student.py writes its own test options)."""
    return row.method not in ('CSD', 'JT')


def benchmark_options(row: Row) -> dict:
    """``kd-test`` options scoring the row's trained network (``experiments/<name>/models/net_g_latest.pth``) on the
    five benchmarks in BasicSR's layout (``GTmod12`` / ``LRbicx<s>``): PSNR and SSIM on Y, border = scale, as the
    papers' tables."""
    metric = {'crop_border': row.scale, 'test_y_channel': True}
    datasets = {
        f'test_{i}': {
            'name': name,
            'type': 'PairedImageDataset',
            'dataroot_gt': f'datasets/{name}/GTmod12',
            'dataroot_lq': f'datasets/{name}/LRbicx{row.scale}',
            'io_backend': {
                'type': 'disk'
            }
        }
        for i, name in enumerate(BENCHMARKS, start=1)
    }
    return {
        'name': row.name,
        'model_type': 'SRModel',
        'scale': row.scale,
        'num_gpu': 'auto',
        'manual_seed': 0,
        'datasets': datasets,
        'network_g': networks(row, 'SRModel')['network_g'],
        'path': {
            'pretrain_network_g': f'experiments/{row.name}/models/net_g_latest.pth',
            'param_key_g': 'params',
            'strict_load_g': True
        },
        'val': {
            'save_img': False,
            'suffix': None,
            'metrics': {
                'psnr': dict(type='calculate_psnr', **metric),
                'ssim': dict(type='calculate_ssim', **metric)
            }
        }
    }


def render_benchmark(row: Row) -> str:
    lines = [
        f'The benchmark table of options/train/paper/{row.file_name} ({row.table}, row "{row.method}", x{row.scale}): '
        f'its trained network on {", ".join(BENCHMARKS)}, PSNR/SSIM on Y, border {row.scale}.',
        f'Paper: {format_numbers(row.numbers)}.',
        'Data: python -m kdplugins.prepare_data Set5 (and Set14, B100, Urban100, Manga109) (docs/datasets.md).',
        f'Test: python -m kdplugins.test -opt options/test/paper/{row.test_file_name} (results/{row.name}/)',
        'Generated by scripts/make_paper_options.py from kdplugins/experiments/paper_recipes.py: edit those.',
    ]
    body = yaml.dump(benchmark_options(row), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)
    return ''.join(f'# {line}\n' for line in wrap_lines(lines)) + body


# ---------------------------------------------------------------------------------------------------------------------
# header comments and rendering
def format_numbers(numbers: Optional[Tuple[float, float, float, float]]) -> str:
    if numbers is None:
        return 'not reported (the table has no row for it)'
    return f'Set5 {numbers[0]:.2f}/{numbers[1]:.4f}, Urban100 {numbers[2]:.2f}/{numbers[3]:.4f} (PSNR/SSIM, Y)'


def prerequisites(row: Row, opt: dict) -> List[str]:
    """What must exist before training: the teacher checkpoint, the x2 run, the MemSR teacher and initialization."""
    path, lines = opt['path'], []
    if row.backbone in BACKBONES and path.get('pretrain_network_t'):
        spec = BACKBONES[row.backbone]
        lines.append(f'Teacher: {path["pretrain_network_t"]} (param key {spec["param_key"]}; '
                     f'{spec["checkpoint_source"]}).')
    if row.method in ('CSD', 'JT'):
        lines.append(f'Start (Algorithm 1, pre-trained width 1.0): {path["pretrain_network_g"]} (BasicSR EDSR-L).')
        if row.method == 'CSD':
            lines.append('VGG-19: torchvision vgg19-dcbb9e9d.pth in the torch hub cache, or set '
                         'train.contrastive_opt.vgg_weights.')
    if path.get('strict_load_g') is False:
        lines.append(f'Init (App. A.1): train train_{row.method}_{row.backbone}_x2.yml first; its '
                     f'{path["pretrain_network_g"]} (upsampler keys of another shape are skipped).')
    if row.method == 'PlainM':
        lines.append(f'Teacher: python -m kdplugins.train -opt options/train/paper/train_TeacherM_MemSR_x{row.scale}'
                     '.yml first.')
        lines.append('Winning initialization (Algorithm 1, into path.pretrain_network_g): python scripts/memsr_init.py'
                     f' -opt options/train/paper/{row.file_name}')
    return lines


def recipe_line(row: Row) -> str:
    train = row_options(row).train
    if train.get('feature_losses'):
        loss = train['feature_losses'][0]
        weights = ', '.join(f'{k} {v:g}' for k, v in loss.items() if k != 'type' and not isinstance(v, str))
        return (f'Losses: L1 pixel {train["pixel_opt"]["loss_weight"]:g} + L1 KD {train["kd_opt"]["loss_weight"]:g} + '
                f'{loss["type"]} ({weights}) on {len(train["feature_losses"])} tap(s).')
    if row.method == 'CSD':
        return (
            f'Losses: L1(S) + lambda_T L1(T) + lambda_C CL, lambda_T {train["teacher_pixel_opt"]["loss_weight"]:g}, '
            f'lambda_C 200/255, K {train["contrastive_opt"]["num_negatives"]} negatives, width '
            f'{train["csd"]["width_mult"]:g}.')
    return ''


def header(row: Row) -> str:
    opt = options(row)
    schedule = schedule_of(row)
    lines = [
        f'{row.table}, row "{row.method}", x{row.scale} ({row.backbone}): {describe(row)}.',
        f'Paper: {format_numbers(row.numbers)}.',
    ]
    if row.also:
        lines.append(f'Also reproduces {row.also}: {format_numbers(CSD_T1[row.scale]["CSD"])}.')
    if row.method in ('CSD', 'JT') and row.scale in CSD_T1_TEACHER:
        lines.append(f'Its width-1.0 network (logged as "Teacher (width 1.0) on Set5"), CSD Table 1 T row: '
                     f'{format_numbers(CSD_T1_TEACHER[row.scale][row.method])}.')
    lines.append(f'Recipe: {schedule["source"]}.')
    recipe = recipe_line(row)
    if recipe:
        lines.append(recipe)
    lines.append(f'Data: DIV2K sub-image LMDBs and Set5 GTmod12/LRbicx{row.scale} ({DATA_README}).')
    lines += prerequisites(row, opt)
    lines.append(f'Train: python -m kdplugins.train -opt options/train/paper/{row.file_name} [--auto_resume]')
    lines.append('Generated by scripts/make_paper_options.py from kdplugins/experiments/paper_recipes.py: edit those.')
    return ''.join(f'# {line}\n' for line in wrap_lines(lines))


def describe(row: Row) -> str:
    if row.method in ('CSD', 'JT'):
        return 'SlimEDSR 256 x 32 with its width-0.25 student (64 x 32)'
    if row.method == 'Baseline':
        return 'EDSR 64 x 32 (the width-0.25 student) trained alone'
    if row.method == 'TeacherM':
        return 'Teacher-M (PixelShuffleEDSR 64 x 16), the teacher of Plain-M'
    if row.method == 'PlainM':
        return 'Teacher-M -> Plain-M (PlainSR 34 x 64, one_pad), winning init + feature distillation'
    sizes = {'EDSR': ('256 x 32', '64 x 32'), 'RCAN': ('10 x 20', '10 x 6'), 'SwinIR': ('180, 6 x 6', '60, 4 x 6')}
    teacher, student = sizes[row.backbone]
    if row_options(row).model_type == 'SRModel':
        return f'student {row.backbone} {student} trained alone'
    return f'teacher {row.backbone} {teacher} -> student {student}'


def wrap_lines(lines: List[str], width: int = 116) -> List[str]:
    """Lines of at most ``width`` characters (continuations indented by two spaces)."""
    out = []
    for line in lines:
        words, current = line.split(' '), ''
        for word in words:
            candidate = f'{current} {word}' if current else word
            if len(candidate) > width and current:
                out.append(current)
                current = '  ' + word
            else:
                current = candidate
        out.append(current)
    return out


class _Dumper(yaml.SafeDumper):
    """Block mappings, flow lists of scalars, no anchors/aliases."""

    def ignore_aliases(self, data) -> bool:
        return True


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(not isinstance(item, (dict, list)) for item in data)
    return dumper.represent_sequence('tag:yaml.org,2002:seq', data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def render(row: Row) -> str:
    """The text of one option file: header comments, then the options as YAML (stable key order)."""
    body = yaml.dump(options(row), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)
    return header(row) + body


def write_files(out_dir: str, wanted: Dict[str, str]) -> List[str]:
    """Write ``wanted`` (file name: text) into ``out_dir``; removes ``*.yml`` there that are not wanted."""
    os.makedirs(out_dir, exist_ok=True)
    for stale in sorted(set(n for n in os.listdir(out_dir) if n.endswith('.yml')) - set(wanted)):
        os.remove(os.path.join(out_dir, stale))
    paths = []
    for file_name, text in wanted.items():
        path = os.path.join(out_dir, file_name)
        with open(path, 'w', newline='\n') as f:
            f.write(text)
        paths.append(path)
    return paths


def write_all(out_dir: str) -> List[str]:
    """(Re)write every training option file into ``out_dir``."""
    return write_files(out_dir, {row.file_name: render(row) for row in PAPER_ROWS})


def write_benchmarks(out_dir: str) -> List[str]:
    """(Re)write the benchmark test files (:func:`benchmark_options`) into ``out_dir``."""
    return write_files(out_dir,
                       {row.test_file_name: render_benchmark(row)
                        for row in PAPER_ROWS if has_benchmark_file(row)})


# ---------------------------------------------------------------------------------------------------------------------
# docs/paper_recipes.md table
def gpu_hours(row: Row) -> str:
    """Table 11's seconds per step x the row's iterations, for EDSR rows (Table 11 is x2 EDSR; the same LR patch
    and networks at x3/x4 are assumed to cost the same per step); other backbones and methods: not given."""
    seconds = TABLE11_SECONDS_PER_STEP.get(row.method)
    if row.backbone != 'EDSR' or seconds is None:
        return 'not given'
    iterations = schedule_of(row)['total_iter']
    return f'{seconds} s x {iterations:.1e} = {seconds * iterations / 3600:.1f} h'


def markdown_table() -> str:
    lines = ['| file | paper table, row | paper PSNR/SSIM (Y): Set5; Urban100 | time (Table 11) |', '|---|---|---|---|']
    for row in PAPER_ROWS:
        numbers = 'not reported' if row.numbers is None else (
            f'{row.numbers[0]:.2f}/{row.numbers[1]:.4f}; {row.numbers[2]:.2f}/{row.numbers[3]:.4f}')
        place = f'{row.table}, {row.method} x{row.scale}' + (f' (also {row.also})' if row.also else '')
        lines.append(f'| `{row.file_name}` | {place} | {numbers} | {gpu_hours(row)} |')
    return '\n'.join(lines) + '\n'


def rows_by_table() -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for row in PAPER_ROWS:
        counts[row.table] = counts.get(row.table, 0) + 1
    return counts
