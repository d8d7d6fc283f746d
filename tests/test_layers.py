"""The import layers that docs/architecture.md draws hold for every module of the package: a module imports only from
its own layer and the layers below it (components < method models < run < experiments)."""
import ast
import re
from conftest import REPO

PACKAGE = REPO / 'kdplugins'


def drawn_layers() -> list:
    """[(layer, [package parts])] from the drawing under '## Layers' in docs/architecture.md, top layer first."""
    text = (REPO / 'docs' / 'architecture.md').read_text()
    drawing = text.split('## Layers', 1)[1].split('```', 2)[1]
    layers = []
    for line in drawing.splitlines():
        match = re.match(r'^ (\w[\w ]*?)\s{2,}kdplugins/', line)
        if match:
            layers.append((match.group(1), []))
        if layers:
            layers[-1][1].extend(m.rstrip('/').removesuffix('.py') for m in re.findall(r'kdplugins/([\w.]+/?)', line))
    return layers


def imported_names(node: ast.AST) -> list:
    if isinstance(node, ast.ImportFrom):
        return [node.module] if node.module else []
    return [alias.name for alias in node.names] if isinstance(node, ast.Import) else []


def module_layer(module: str, rank: dict):
    parts = module.split('.')
    return rank.get(parts[1]) if len(parts) > 1 and parts[0] == 'kdplugins' else None


def test_every_import_goes_to_the_same_or_a_lower_layer():
    layers = drawn_layers()
    assert [name for name, _ in layers] == ['experiments', 'run', 'method models', 'components']
    rank = {part: len(layers) - i for i, (_, parts) in enumerate(layers) for part in parts}
    drawn = set(rank)
    present = {
        p.name.removesuffix('.py')
        for p in PACKAGE.iterdir() if p.name != '__init__.py' and (p.suffix == '.py' or (p / '__init__.py').is_file())
    }
    assert present == drawn, f'the drawing misses {present - drawn} or names what is gone: {drawn - present}'
    upward = []
    for path in PACKAGE.rglob('*.py'):
        module = '.'.join(path.relative_to(REPO).with_suffix('').parts).removesuffix('.__init__')
        own = module_layer(module, rank)
        if own is None:  # kdplugins/__init__.py: installs compat and registers the components
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = imported_names(node)
            upward += [f'{module} imports {name}' for name in names if (module_layer(name, rank) or 0) > own]
    assert not upward, '\n'.join(upward)
