"""options/train/paper/: the papers' table rows (AugKD Tables 1-3, 10, App. A.1; CSD Table 1; MemSR Table 4), generated
by kdplugins/experiments/paper_recipes.py.

Checked for every file: (a) it is byte for byte what the generator writes; (b) basicsr's ``parse_options`` parses it
and ``check_options`` passes once its data and checkpoint paths point at tiny real data (LMDBs made by
scripts/create_lmdb.py at the file's scale from photos bundled with scikit-image: conftest.py's ``hr_images``) and at
checkpoints of seeded random weights saved in the public checkpoints' key layout under their param key; (c) its model
builds in this process with the full-size networks and loads the teacher (strict), the student's start (x2 run,
EDSR-L, winning initialization) and the VGG-19.

Time budget (90 s on 2 CPU cores): the x4 file of each (backbone, method) also trains 2 iterations (its x4 student
starts from the x2 run with ``strict_load_g: false``, the path App. A.1 adds); the x2 / x3 files are only built and
loaded. Overrides are sizes only (batch, patch, iterations, validation frequency and the probe input side
``train.probe_size``), the paths above, ``num_worker_per_gpu: 0`` (batches are read in this process) and
``train.teacher_check: false`` (the random teachers are worse than bicubic on purpose).
Nothing downloads, and nothing comes from ../shared/data.
"""
import importlib.util
import math
import pytest
import torch
import yaml
from basicsr.archs import build_network
from basicsr.models import build_model
from basicsr.utils import make_exp_dirs
from conftest import REPO, parse_train_options, train_batches, write_yaml
from pathlib import Path

from kdplugins.experiments import paper_recipes
from kdplugins.losses.csd_loss import random_vgg_weights, vgg19_features
from kdplugins.runtime.option_checks import check_options

PAPER_DIR = REPO / 'options' / 'train' / 'paper'
BENCHMARK_DIR = REPO / 'options' / 'test' / 'paper'
ROWS = {row.file_name: row for row in paper_recipes.PAPER_ROWS}
TRAINED_SCALE = 4  # one file per (backbone, method) trains
LQ_SIZE = 8  # LR patch side of the tiny runs: a multiple of SwinIR's window; AugKD's x4 zoom-out of it is 2x2
# AugKD Table 1 (x4): parameters in millions of the teacher and of the student
TABLE1_PARAMS = {'EDSR': (43.09, 2.70), 'RCAN': (15.59, 5.17), 'SwinIR': (11.90, 1.24)}


def batch_size(opt: dict) -> int:
    """1, except CSD (K = 10 negatives need 11 samples) and RKD (angles need 3 samples)."""
    if opt['model_type'] == 'CSDModel':
        return 11
    if any(loss['type'] == 'RKDLoss' for loss in opt['train'].get('feature_losses') or []):
        return 3
    return 1


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / 'scripts' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------------------------------------------
# (a) the committed files are the generator's output
def test_committed_files_equal_the_generator_output(tmp_path):
    load_script('make_paper_options').main(['--out', str(tmp_path / 'train'), '--test-out', str(tmp_path / 'test')])
    for out, committed in ((tmp_path / 'train', PAPER_DIR), (tmp_path / 'test', BENCHMARK_DIR)):
        written = sorted(p.name for p in out.glob('*.yml'))
        assert written == sorted(p.name for p in committed.glob('*.yml')), 'run python scripts/make_paper_options.py'
        for name in written:
            assert (out / name).read_bytes() == (committed / name).read_bytes(), f'{name}: regenerate the files'


def test_each_benchmark_file_scores_the_network_its_training_file_trains():
    """Same network and run name as the training file, its latest weights loaded strictly, the five benchmarks at the
    row's scale in the layout kdplugins.prepare_data writes; CSD / J-T (a slimmable network) have none."""
    tested = {p.name for p in BENCHMARK_DIR.glob('*.yml')}
    assert tested == {row.test_file_name for row in ROWS.values() if row.method not in ('CSD', 'JT')}
    for name, row in ROWS.items():
        if row.test_file_name not in tested:
            continue
        train = yaml.safe_load((PAPER_DIR / name).read_text())
        test = yaml.safe_load((BENCHMARK_DIR / row.test_file_name).read_text())
        assert test['network_g'] == train['network_g'] and test['name'] == train['name']
        assert test['path']['pretrain_network_g'] == f"experiments/{train['name']}/models/net_g_latest.pth"
        assert [(d['name'], d['dataroot_lq']) for d in test['datasets'].values()
                ] == [(b, f'datasets/{b}/LRbicx{row.scale}') for b in ('Set5', 'Set14', 'B100', 'Urban100', 'Manga109')]
        assert test['val']['metrics'] == train['val']['metrics']


def test_one_file_per_table_row():
    assert paper_recipes.rows_by_table() == {
        'AugKD Table 2': 24,  # 8 methods x 3 scales
        'AugKD Table 3': 24,  # 8 methods x 3 scales (CSD not applicable to RCAN, Sec. 4.1; CrossKD instead)
        'AugKD Table 10': 9,  # scratch, KD, AugKD x 3 scales
        'CSD Table 1': 4,  # Baseline and J-T at x2 / x4 (its CSD rows are AugKD Table 2's CSD files)
        'MemSR Table 4': 6  # Teacher-M and Plain-M at x2 / x3 / x4
    }


def test_every_file_says_what_it_reproduces_and_how():
    for name, row in ROWS.items():
        text = (PAPER_DIR / name).read_text()
        assert text.startswith(f'# {row.table}, row "{row.method}", x{row.scale}')
        assert f'python -m kdplugins.train -opt options/train/paper/{name}' in text
        if row.numbers:
            assert f'Set5 {row.numbers[0]:.2f}/{row.numbers[1]:.4f}' in text


# ----------------------------------------------------------------------------------------------------------------
# fixtures: tiny real data and seeded random checkpoints (one per arch and scale), made once
class Assets:
    """Tiny LMDBs per scale and checkpoints per (what, scale), created on first use."""

    def __init__(self, root: Path, hr_images: Path):
        self.root, self.hr_images = root, hr_images
        self.cache = {}

    def cached(self, key, make):
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def lmdbs(self, scale: int) -> dict:
        return self.cached(('lmdb', scale), lambda: self.make_lmdbs(scale))

    def make_lmdbs(self, scale: int) -> dict:
        create_lmdb = load_script('create_lmdb')
        folder = self.root / f'lmdb_x{scale}'
        paths = {key: str(folder / f'{key}.lmdb') for key in ('train_hr', 'train_lr', 'val_hr', 'val_lr')}
        for part, names in (('train', ('coffee.png', 'motorcycle.png')), ('val', ('chelsea.png', ))):
            images = folder / f'{part}_images'
            images.mkdir(parents=True)
            for name in names:
                (images / name).symlink_to(self.hr_images / name)
            crop = ['--crop-size', str(LQ_SIZE * scale), '--step', str(LQ_SIZE * scale)] if part == 'train' else []
            create_lmdb.main([
                '--hr',
                str(images), '--scale',
                str(scale), *crop, '--out-hr', paths[f'{part}_hr'], '--out-lr', paths[f'{part}_lr']
            ])
        return paths

    def network_checkpoint(self, backbone: str, role: str, scale: int, param_key: str = 'params') -> str:
        """Seeded random weights of a network of the recipes, saved as ``{param_key: state_dict}``."""

        def make():
            torch.manual_seed(scale)
            state = build_network(paper_recipes.network(backbone, role, scale)).state_dict()
            path = self.root / f'{backbone}_{role}_x{scale}.pth'
            torch.save({param_key: state}, path)
            return str(path)

        return self.cached((backbone, role, scale, param_key), make)

    def vgg(self) -> str:
        """torchvision's VGG-19 key layout (``features.<i>.*``, up to relu5_1), seeded random weights."""

        def make():
            features = vgg19_features('relu5_1')
            random_vgg_weights(features, seed=3)
            path = self.root / 'vgg19_random.pth'
            torch.save({f'features.{k}': v for k, v in features.state_dict().items()}, path)
            return str(path)

        return self.cached('vgg', make)

    def memsr_init(self, opt: dict, scale: int) -> str:
        """scripts/memsr_init.py (Algorithm 1) on the random Teacher-M, few small samples."""

        def make():
            path = self.root / f'memsr_init_x{scale}.pth'
            yml = write_yaml(self.root / f'memsr_init_x{scale}.yml', opt)
            load_script('memsr_init').main(
                ['-opt', str(yml), '--out',
                 str(path), '--n-samples', '2', '--patch-size', '8'])
            return str(path)

        return self.cached(('memsr_init', scale), make)


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """One intra-op thread: the tiny convolutions of these runs are many times slower with two threads on a shared
    2-core machine (spinning threads); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def assets(tmp_path_factory, hr_images) -> Assets:
    return Assets(tmp_path_factory.mktemp('paper_assets'), hr_images)


def tiny_options(name: str, assets: Assets) -> dict:
    """The file's options with the paths on tiny data / random checkpoints and the sizes of a 2-iteration run."""
    row = ROWS[name]
    opt = yaml.safe_load((PAPER_DIR / name).read_text())
    lmdbs = assets.lmdbs(row.scale)
    train_set, val_set = opt['datasets']['train'], opt['datasets']['val']
    train_set.update(
        dataroot_gt=lmdbs['train_hr'],
        dataroot_lq=lmdbs['train_lr'],
        gt_size=LQ_SIZE * row.scale,
        num_worker_per_gpu=0,
        persistent_workers=False,
        batch_size_per_gpu=batch_size(opt))
    val_set.update(dataroot_gt=lmdbs['val_hr'], dataroot_lq=lmdbs['val_lr'], io_backend={'type': 'lmdb'})
    opt['train']['total_iter'] = 2
    if 'network_t' in opt:
        opt['train']['probe_size'] = LQ_SIZE  # side of KDModel's probe input (default 32)
        opt['train']['teacher_check'] = False  # a random teacher is worse than bicubic on purpose
    opt['val']['val_freq'] = 10**9
    override_paths(opt, row, assets)
    return opt


def override_paths(opt: dict, row, assets: Assets) -> None:
    path = opt['path']
    if path.get('pretrain_network_t'):
        backbone = 'MemSR' if row.backbone == 'MemSR' else row.backbone
        path['pretrain_network_t'] = assets.network_checkpoint(backbone, 'teacher', row.scale, path['param_key_t'])
    if row.method in ('CSD', 'JT'):
        path['pretrain_network_g'] = assets.network_checkpoint('EDSR', 'teacher', row.scale, path['param_key_g'])
    elif row.method == 'PlainM':
        init_opt = {k: v for k, v in opt.items() if k != 'path'}
        init_opt['path'] = {k: v for k, v in path.items() if not k.endswith('_g')}
        path['pretrain_network_g'] = assets.memsr_init(init_opt, row.scale)
        opt['train']['memsr']['bridges'] = path['pretrain_network_g']
    elif path.get('pretrain_network_g'):  # x4 from the x2 run of the same row (App. A.1)
        path['pretrain_network_g'] = assets.network_checkpoint(row.backbone, 'student', 2, path['param_key_g'])
    if 'contrastive_opt' in opt['train']:
        opt['train']['contrastive_opt']['vgg_weights'] = assets.vgg()


def parsed_options(name: str, assets: Assets, tmp_path: Path, monkeypatch) -> dict:
    yml = write_yaml(tmp_path / name, tiny_options(name, assets))
    return parse_train_options(yml, tmp_path, monkeypatch=monkeypatch)


# ----------------------------------------------------------------------------------------------------------------
# (b) parse + option checks, (c) build, load, train
@pytest.mark.parametrize('name', sorted(ROWS))
def test_file_parses_checks_builds_and_trains(name, assets, tmp_path, monkeypatch):
    row = ROWS[name]
    opt = parsed_options(name, assets, tmp_path, monkeypatch)
    check_options(opt)
    assert opt['num_gpu'] == 0 and opt['scale'] == row.scale
    make_exp_dirs(opt)
    model = build_model(opt)  # loads network_t (strict), pretrain_network_g, VGG-19 / bridges
    check_table1_sizes(model, row)
    if row.scale == TRAINED_SCALE:
        train_two_iterations(model, opt)


def check_table1_sizes(model, row) -> None:
    """The x4 networks have AugKD Table 1's parameter counts (0.01 M)."""
    if row.scale != 4 or row.backbone not in TABLE1_PARAMS or row.method in ('CSD', 'JT'):
        return
    teacher, student = TABLE1_PARAMS[row.backbone]
    assert round(count(model.net_g) / 1e6, 2) == student
    if hasattr(model, 'net_t'):
        assert round(count(model.net_t) / 1e6, 2) == teacher


def count(net) -> int:
    return sum(p.numel() for p in net.parameters())


def train_two_iterations(model, opt: dict) -> None:
    before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    for i, batch in enumerate(train_batches(opt, 2), start=1):
        model.update_learning_rate(i, warmup_iter=opt['train'].get('warmup_iter', -1))
        model.feed_data(batch)
        model.optimize_parameters(i)
        assert all(math.isfinite(float(v)) for v in model.log_dict.values()), model.log_dict
    after = model.net_g.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), 'the student did not change'
