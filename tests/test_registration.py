"""import kdplugins: shims, registration exactly once, listing."""
import importlib
import subprocess
import sys
from basicsr.utils.registry import DATASET_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY
from conftest import REPO, run_module

import kdplugins
from kdplugins.list import registered_by_kdplugins


def test_registers_into_basicsr_registries():
    from kdplugins.models.kd_model import KDModel
    assert MODEL_REGISTRY.get('KDModel') is KDModel
    assert 'PairedImageDatasetWithIndex' in DATASET_REGISTRY
    assert 'FitNetLoss' in LOSS_REGISTRY
    listed = registered_by_kdplugins()
    assert 'KDModel' in listed['model'] and 'FitNetLoss' in listed['loss']
    assert 'SRModel' not in listed['model']  # basicsr's own entries are not listed as ours


def test_reimport_and_reload_do_not_raise():
    code = ('import kdplugins, importlib, kdplugins.models.kd_model as m\n'
            'import kdplugins\n'
            'importlib.reload(m); importlib.reload(kdplugins)\n'
            'from basicsr.utils.registry import MODEL_REGISTRY\n'
            'assert MODEL_REGISTRY.get("KDModel") is m.KDModel\n'
            'print("ok")\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0 and result.stdout.strip().endswith('ok'), result.stderr


def test_clash_with_another_definition_is_an_error():
    from basicsr.utils.registry import Registry

    from kdplugins.utils.registry import register
    registry = Registry('test')

    class Foreign:
        pass

    Foreign.__module__ = 'someproject.archs'
    registry.register(Foreign)

    class Other:
        pass

    Other.__name__ = 'Foreign'
    try:
        register(registry)(Other)
    except KeyError as error:
        assert 'someproject.archs' in str(error)
    else:
        raise AssertionError('registering a different object under a taken name must fail')


def test_reload_of_a_module_replaces_its_entry():
    import kdplugins.losses.fitnet_loss as module
    old = LOSS_REGISTRY.get('FitNetLoss')
    importlib.reload(module)
    assert LOSS_REGISTRY.get('FitNetLoss') is module.FitNetLoss is not old


def test_functional_tensor_alias():
    import torchvision.transforms.functional as functional
    assert sys.modules['torchvision.transforms.functional_tensor'] is functional
    assert kdplugins.runtime.compat.installed()


def test_list_command(tmp_path):
    out = run_module('kdplugins.list', cwd=tmp_path).stdout
    lines = {line.split(' (')[0]: line for line in out.splitlines()}
    assert set(lines) == {'arch', 'model', 'loss', 'dataset'}
    assert 'KDModel' in lines['model'] and 'PairedImageDatasetWithIndex' in lines['dataset']
    assert 'SRModel' not in lines['model'].split(': ')[1].split(', ')
