"""The package declares what it imports (pyproject.toml, PEP 621), and the command lines it documents exist."""
import ast
import re
import sys
import tomllib
from conftest import REPO

# import name -> distribution name, where they differ
DISTRIBUTION = {'cv2': 'opencv-python', 'skimage': 'scikit-image', 'yaml': 'pyyaml'}
PROJECT = tomllib.loads((REPO / 'pyproject.toml').read_text())['project']


def requirement_names(requirements):
    return {re.split(r'[<>=!~\[; ]', requirement, maxsplit=1)[0].lower() for requirement in requirements}


def imported_distributions(folder):
    """The distributions kdplugins' modules import at their top level or inside functions (standard library and
    kdplugins itself left out)."""
    names = set()
    for path in folder.rglob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split('.')[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split('.')[0])
    names -= set(sys.stdlib_module_names) | {'kdplugins'}
    return {DISTRIBUTION.get(name, name).lower() for name in names}


def test_every_imported_package_is_declared():
    """A package imported but not declared installs on our machines (it came with something else) and fails on a
    user's; the export packages may be extras."""
    declared = requirement_names(PROJECT['dependencies'] + PROJECT['optional-dependencies']['export'])
    assert imported_distributions(REPO / 'kdplugins') - declared == set()
    assert 'basicsr==1.4.2' in PROJECT['dependencies']


def test_the_linters_are_pinned():
    dev = PROJECT['optional-dependencies']['dev']
    assert all('==' in requirement for requirement in dev if not requirement.startswith('pytest'))


def test_every_command_named_in_the_readme_and_docs_is_an_entry_point():
    documented = set()
    for path in [REPO / 'README.md', *(REPO / 'docs').glob('*.md')]:
        documented.update(re.findall(r'(?<![\w-])(kd-[a-z-]+[a-z])\b', path.read_text()))
    assert documented <= set(PROJECT['scripts']), documented - set(PROJECT['scripts'])
    for command, target in PROJECT['scripts'].items():
        module, function = target.split(':')
        assert callable(getattr(__import__(module, fromlist=[function]), function)), command
