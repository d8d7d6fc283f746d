"""Which networks spandrel loads, measured: the table of docs/deploy.md ("spandrel"), ``scripts/spandrel_support.py``.

Every distinct ``network_g`` / ``network_t`` of the option files (paper sizes, random weights) and the archs of
kdplugins that no option file names (:data:`EXTRA`) is given to spandrel's ``ModelLoader`` as a file: for the archs
of :mod:`.spandrel_layout` the ``--format spandrel`` file of ``python -m kdplugins.export``, whose arch, scale and
outputs on a photo crop are compared with the network's; for the others the plain state_dict, to record what
spandrel says of it (``UnsupportedModelError``, or the arch it mistakes it for).
"""
import glob
import json
import os
import tempfile
import torch
import yaml
from basicsr.archs import build_network
from typing import Dict, List, Optional

from kdplugins.deploy import formats, images, spandrel_layout

# archs no option file names: the CARN student that scripts/extract_csd_student.py writes from SlimCARN, and
# BasicSR's RRDBNet (ESRGAN), which spandrel knows
EXTRA = [
    ('extracted CSD student', dict(type='CARN', scale=4, channels=32)),
    ('BasicSR arch, no option file', dict(type='RRDBNet', num_in_ch=3, num_out_ch=3, num_feat=64, num_block=2,
                                          scale=4)),
]
CROP = 32  # LR side of the compared crop: a multiple of SwinIR's window 8 and of RRDBNet's pixel-unshuffle


def option_file_networks(folder: str) -> List[Dict[str, object]]:
    """Distinct network options of ``network_g`` and ``network_t`` in the option files under ``folder``: [{'options',
    'used_as': {'network_g', ...}, 'files': n}], in the order first met (files sorted by path)."""
    found: Dict[str, Dict[str, object]] = {}
    for path in sorted(glob.glob(os.path.join(folder, '**', '*.yml'), recursive=True)):
        with open(path) as f:
            opt = yaml.safe_load(f)
        for section in ('network_g', 'network_t'):
            options = opt.get(section) if isinstance(opt, dict) else None
            if isinstance(options, dict) and 'type' in options:
                entry = found.setdefault(
                    json.dumps(options, sort_keys=True), {
                        'options': dict(options),
                        'used_as': set(),
                        'files': 0
                    })
                entry['used_as'].add(section)
                entry['files'] += 1
    return list(found.values())


def measure(options: dict, folder: str, crop: Optional[torch.Tensor] = None) -> Dict[str, object]:
    """What spandrel makes of the network of ``options`` (random weights, seed 0); files are written to ``folder``.

    Keys: ``type``, ``scale`` (the network's), ``spandrel`` (the arch spandrel read, or the error it raised),
    ``spandrel_scale``, ``max_abs_difference`` (spandrel's model against the network on ``crop``, default a
    :data:`CROP`-pixel square of scikit-image's astronaut), ``refused`` (why ``--format spandrel`` refuses it).
    """
    torch.manual_seed(0)
    net = build_network(dict(options)).eval()
    if crop is None:
        photo = images.read_image(images.scikit_image_photos(['astronaut.png'])[0])
        crop = images.to_network_input(images.Image(images.center_crop(photo.pixels, CROP, CROP), 8), 3)
    with torch.no_grad():
        expected = net(crop)
    row = {'type': options['type'], 'scale': expected.shape[-1] // crop.shape[-1]}
    try:
        spandrel_layout.check_supported(options)
        state = spandrel_layout.spandrel_state_dict(net.state_dict(), options)
    except spandrel_layout.SpandrelUnsupportedError as error:
        row['refused'] = str(error)
        state = net.state_dict()
    path = os.path.join(folder, f'{options["type"]}.safetensors')
    formats.save_safetensors(state, path, {})
    from spandrel import ModelLoader
    try:
        descriptor = ModelLoader().load_from_file(path)
    except Exception as error:  # noqa: B902  (spandrel raises UnsupportedModelError, or torch's loading errors)
        row['spandrel'] = type(error).__name__
        return row
    row['spandrel'], row['spandrel_scale'] = descriptor.architecture.id, descriptor.scale
    with torch.no_grad():
        got = descriptor.model.eval()(crop.clone())
    row['max_abs_difference'] = (float((got - expected).abs().max()) if got.shape == expected.shape else float('inf'))
    return row


def support_rows(option_folder: str) -> List[Dict[str, object]]:
    """:func:`measure` of every network of :func:`option_file_networks` and :data:`EXTRA`, with where each comes
    from (``used_as``)."""
    networks = option_file_networks(option_folder)
    for used_as, options in EXTRA:
        networks.append({'options': options, 'used_as': {used_as}, 'files': 0})
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for network in networks:
            row = measure(network['options'], folder)
            row.update(used_as=network['used_as'], files=network['files'])
            rows.append(row)
    return rows


def markdown_table(rows: List[Dict[str, object]]) -> str:
    """One line per arch: where the option files use it, spandrel's verdict, scales read right, largest difference."""
    by_type: Dict[str, List[Dict[str, object]]] = {}
    for row in rows:
        by_type.setdefault(row['type'], []).append(row)
    lines = [
        '| arch | used as | networks | spandrel loads it | spandrel arch | keys written | scale read right | '
        'max abs difference |', '|---|---|---|---|---|---|---|---|'
    ]
    for kind, group in by_type.items():
        used = sorted(set().union(*(row['used_as'] for row in group)))
        loaded = [row for row in group if 'refused' not in row and 'max_abs_difference' in row]
        verdicts = sorted(
            {row['spandrel'] if 'spandrel_scale' in row else f'none ({row["spandrel"]})'
             for row in group})
        scales = ' '.join(f'x{scale}' for scale in sorted({row['scale'] for row in loaded}))
        if loaded:
            scales += ': ' + ('yes' if all(row['spandrel_scale'] == row['scale'] for row in loaded) else 'no')
        worst = max((row['max_abs_difference'] for row in loaded), default=None)
        misread = [row for row in group if 'refused' in row and 'max_abs_difference' in row]
        answer = 'yes' if len(loaded) == len(group) else ('no' + (' (spandrel misreads it)' if misread else ''))
        keys = spandrel_layout.LAYOUTS[kind].keys if kind in spandrel_layout.LAYOUTS else '-'
        lines.append(f'| {kind} | {", ".join(used)} | {len(group)} | {answer} | {", ".join(verdicts)} | {keys} | '
                     f'{scales or "-"} | {"-" if worst is None else f"{worst:.3g}"} |')
    return '\n'.join(lines)
