"""custom_imports / --import: a project of the user's own, written into a temporary folder, registers an arch (used as
teacher and as student, with a feature loss tapping one of its layers) and a loss; kdplugins' entry points use them."""
import pytest
import re
import torch
from conftest import kd_options, run_module, write_yaml

PACKAGE = '''
import torch
from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY
from torch import nn


@ARCH_REGISTRY.register()
class MyTinySR(nn.Module):
    def __init__(self, num_feat=8, upscale=2):
        super().__init__()
        self.head = nn.Conv2d(3, num_feat, 3, 1, 1)
        self.body = nn.Sequential(nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.ReLU())
        self.tail = nn.Sequential(nn.Conv2d(num_feat, 3 * upscale**2, 3, 1, 1), nn.PixelShuffle(upscale))

    def forward(self, x):
        return self.tail(self.body(self.head(x)))


@LOSS_REGISTRY.register()
class MyMeanLoss(nn.Module):
    def __init__(self, loss_weight=1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, pred, target):
        return self.loss_weight * (pred.mean() - target.mean()).abs()
'''


@pytest.fixture
def project(tmp_path):
    """``my_project.archs`` in a folder of its own (the runs start there, so it is on sys.path)."""
    (tmp_path / 'my_project').mkdir()
    (tmp_path / 'my_project' / '__init__.py').write_text('')
    (tmp_path / 'my_project' / 'archs.py').write_text(PACKAGE)
    return tmp_path


def my_options(lmdbs, project, name: str) -> dict:
    teacher_net = {'type': 'MyTinySR', 'num_feat': 16, 'upscale': 2}
    teacher = project / 'teacher.pth'
    if not teacher.exists():
        import importlib
        import sys
        sys.path.insert(0, str(project))
        try:
            module = importlib.import_module('my_project.archs')
            torch.manual_seed(0)
            torch.save({'params': module.MyTinySR(16, 2).state_dict()}, teacher)
        finally:
            sys.path.remove(str(project))
    opt = kd_options(
        lmdbs,
        teacher,
        name=name,
        total_iter=2,
        feature_losses=[{
            'type': 'FitNetLoss',
            'student_layer': 'body',
            'teacher_layer': 'body',
            'loss_weight': 0.1
        }])
    opt['network_g'] = {'type': 'MyTinySR', 'num_feat': 8, 'upscale': 2}
    opt['network_t'] = teacher_net
    opt['train']['kd_opt'] = {'type': 'MyMeanLoss', 'loss_weight': 0.5}
    return opt


@pytest.mark.parametrize('how', ['yaml', 'command-line'])
def test_a_users_arch_and_loss_train_as_teacher_student_and_feature_tap(tiny_lmdbs, project, how):
    opt = my_options(tiny_lmdbs, project, f'mine_{how.replace("-", "_")}')
    args = ['--import', 'my_project.archs'] if how == 'command-line' else []
    if how == 'yaml':
        opt['custom_imports'] = ['my_project.archs']
    yml = write_yaml(project / f'{opt["name"]}.yml', opt)
    result = run_module('kdplugins.train', '-opt', str(yml), *args, cwd=project, separate_process=True)
    assert result.returncode == 0
    log = ''.join(p.read_text() for p in (project / 'experiments' / opt['name']).glob('train_*.log'))
    assert len(re.findall(r'l_pix: [0-9.e+-]+ l_kd: [0-9.e+-]+ l_FitNetLoss: [0-9.e+-]+', log)) == 2
    weights = torch.load(project / 'experiments' / opt['name'] / 'models' / 'net_g_latest.pth')['params']
    assert sorted(weights) == [
        'body.0.bias', 'body.0.weight', 'head.bias', 'head.weight', 'tail.0.bias', 'tail.0.weight'
    ]


def test_list_shows_what_an_import_registered(project):
    out = run_module('kdplugins.list', '--import', 'my_project.archs', cwd=project).stdout
    assert 'arch from --import (1): MyTinySR' in out and 'loss from --import (1): MyMeanLoss' in out


def test_an_import_that_fails_names_the_module_the_error_and_sys_path(tiny_lmdbs, project):
    opt = my_options(tiny_lmdbs, project, 'broken')
    opt['custom_imports'] = ['my_project.no_such_module']
    yml = write_yaml(project / 'broken.yml', opt)
    result = run_module('kdplugins.train', '-opt', str(yml), cwd=project, check=False, separate_process=True)
    assert result.returncode != 0
    assert "custom_imports: cannot import 'my_project.no_such_module': ModuleNotFoundError" in result.stderr
    assert 'looked up on sys.path' in result.stderr and str(project) in result.stderr
    assert not (project / 'experiments').exists()


def test_an_unknown_type_without_close_names_points_at_custom_imports(tiny_lmdbs, project):
    opt = my_options(tiny_lmdbs, project, 'unknown')  # MyTinySR without its import
    yml = write_yaml(project / 'unknown.yml', opt)
    result = run_module('kdplugins.train', '-opt', str(yml), cwd=project, check=False, separate_process=True)
    assert result.returncode != 0
    assert "network_g.type: unknown arch type 'MyTinySR'." in result.stderr
    assert ('A type of your own project must be imported first: add its module to the option file (custom_imports: '
            '[my_project.archs]) or pass --import my_project.archs.') in result.stderr
