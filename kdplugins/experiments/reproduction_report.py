"""The reproduction's report: tables, plots and ``docs/results.md`` from the logs of its runs.

Scores are the last validation of each finished run (PSNR / SSIM on Y, border 4); tables give the mean ± half the
range over seeds, the gains over a baseline are paired by seed (same initialization and data order) and reported seed
by seed and with the Student t interval of :mod:`kdplugins.experiments.statistics`. Plots: validation PSNR against
iteration (:func:`kdplugins.utils.plots.curves_plot`) and PSNR against CPU runtime
(:func:`kdplugins.utils.plots.tradeoff_plot`).
"""
import os
import re
import statistics
from typing import Dict, List, Optional, Sequence, Tuple

from kdplugins.experiments.method_options import METHODS
from kdplugins.experiments.per_image import cached_per_image_psnr
from kdplugins.experiments.reproduction import (BASELINE, CLAIMS, COMPARISONS, CSD, DIAGNOSTICS, OPTIONS_DIR, RECIPE,
                                                RUNS, base_options, memsr_network, rerun_name, run_name, run_seeds,
                                                slim_edsr, with_rfdn_teacher)
from kdplugins.experiments.reproduction_logs import feature_term_fraction, finished, history, step_time, teacher_scores
from kdplugins.experiments.statistics import (MARKDOWN_HEADER, NOT_RESOLVED, PairedComparison,
                                              compare_images_over_seeds, compare_paired, markdown_row)


# ------------------------------------------------------------------------------------------------------------------
# tables
def mean_spread(values: List[float]) -> str:
    """``mean ± half the range`` (4 decimals); the value alone for one, 'n/a' for none."""
    if not values:
        return 'n/a'
    if len(values) == 1:
        return f'{values[0]:.4f}'
    return f'{statistics.mean(values):.4f} ± {(max(values) - min(values)) / 2:.4f}'


def final_scores(method: str, seeds: List[int]) -> Dict[str, Dict[str, List[float]]]:
    """``{dataset: {'psnr': [...], 'ssim': [...]}}`` at the last validation of each finished run."""
    scores: Dict[str, Dict[str, List[float]]] = {}
    for seed in run_seeds(method, seeds):
        name = run_name(method, seed)
        if not finished(name):
            continue
        for dataset, points in history(name).items():
            _, psnr, ssim = points[-1]
            scores.setdefault(dataset, {'psnr': [], 'ssim': []})
            scores[dataset]['psnr'].append(psnr)
            scores[dataset]['ssim'].append(ssim)
    return scores


def rerun_lines(seeds: List[int]) -> str:
    """Final PSNR of every configuration trained a second time (``--rerun``) next to its first run."""
    lines = []
    for method in RUNS:
        for seed in run_seeds(method, seeds):
            names = run_name(method, seed), rerun_name(method, seed)
            if not all(finished(name) for name in names):
                continue
            cells = []
            for dataset in ('Set5', 'Set14'):
                first, second = (final_psnr(name, dataset) for name in names)
                cells.append(f'{dataset} {first:.4f} / {second:.4f} dB (difference {second - first:+.4f})')
            lines.append(f'* {method}, seed {seed}: ' + ', '.join(cells))
    return '\n'.join(lines)


def rerun_section(seeds: List[int]) -> str:
    """The report's section of :func:`rerun_lines` ('' without re-runs)."""
    lines = rerun_lines(seeds)
    if not lines:
        return ''
    return ('\n## Re-run check\n\nConfigurations trained a second time from nothing (`--rerun`), final PSNR-Y of the '
            f'first run / of the re-run:\n\n{lines}\n')


def diagnostics_section(seeds: List[int]) -> str:
    """The diagnostic runs that finished, with the claim runs they vary, against scratch."""
    trained = [m for m in DIAGNOSTICS if any(finished(run_name(m, s)) for s in seeds)]
    if not trained:
        return ''
    varied = list(dict.fromkeys(DIAGNOSTICS[m][0] for m in trained))
    fractions = {m: [feature_term_fraction(run_name(m, s)) for s in seeds if finished(run_name(m, s))] for m in trained}
    changes = '\n'.join(f'* `{m}`: {DIAGNOSTICS[m][1]}; feature term / pixel term over the last 4 logged iterations: ' +
                        ', '.join(f'{f:.3g}' for f in fractions[m]) for m in trained)
    return (f"\n## Diagnostics (not the papers' settings)\n\n{changes}\n\n"
            f'{method_table([BASELINE] + varied + trained, seeds)}\n\nPSNR gain over {BASELINE}, seed by seed:\n\n'
            f'{differences(varied + trained, BASELINE, seeds)}\n')


def calibration_table(seeds: List[int]) -> str:
    """The feature-loss weight runs (``<loss>_weight_<w>``) that finished: the feature term over the pixel term at the
    end, and the final PSNR-Y, seed by seed (docs/conventions.md, "Calibration")."""
    lines = [
        '| run | loss | weight | seed | feature term / pixel term | Set5 PSNR | Set14 PSNR |',
        '|---|---|---:|---:|---:|---:|---:|'
    ]
    for method in DIAGNOSTICS:
        loss, weight = method.split('_weight_')
        for seed in seeds:
            name = run_name(method, seed)
            if finished(name):
                psnr = [final_psnr(name, d) for d in ('Set5', 'Set14')]
                lines.append(f'| `{method}` | {loss.upper()} | {float(weight):g} | {seed} | '
                             f'{feature_term_fraction(name):.3g} | {psnr[0]:.4f} | {psnr[1]:.4f} |')
    return '\n'.join(lines)


def median_step_time(method: str, seeds: List[int]) -> Optional[float]:
    """Median over the method's runs of their :func:`step_time`."""
    times = [t for t in (step_time(run_name(method, s)) for s in run_seeds(method, seeds)) if t]
    return statistics.median(times) if times else None


def method_table(methods: List[str], seeds: List[int], datasets: Tuple[str, str] = ('Set5', 'Set14')) -> str:
    """Per method: finished runs, PSNR and SSIM per set (:func:`mean_spread` over seeds), median step time over
    scratch's."""
    scratch_time = median_step_time(BASELINE, seeds)
    lines = [
        f'| method | runs | {datasets[0]} PSNR | {datasets[0]} SSIM | {datasets[1]} PSNR | {datasets[1]} SSIM '
        '| step time / scratch |', '|---|---:|---:|---:|---:|---:|---:|'
    ]
    for method in methods:
        scores = final_scores(method, seeds)
        runs = sum(finished(run_name(method, s)) for s in run_seeds(method, seeds))
        time = median_step_time(method, seeds)
        ratio = f'{time / scratch_time:.2f}' if time and scratch_time else 'n/a'
        cells = [mean_spread(scores.get(d, {}).get(m, [])) for d in datasets for m in ('psnr', 'ssim')]
        lines.append(f'| {method} | {runs} | ' + ' | '.join(cells) + f' | {ratio} |')
    return '\n'.join(lines)


def final_psnr(name: str, dataset: str) -> Optional[float]:
    """PSNR at the last validation of a finished run (None if it has not finished)."""
    points = history(name).get(dataset) if finished(name) else None
    return points[-1][1] if points else None


def differences(methods: List[str], baseline: str, seeds: List[int]) -> str:
    """PSNR gain over the baseline of the same seed (same data order): mean ± half the range, then seed by seed."""
    lines = []
    for method in methods:
        if method == baseline:
            continue
        cells = []
        for dataset in ('Set5', 'Set14'):
            pairs = {seed: tuple(final_psnr(run_name(m, seed), dataset) for m in (method, baseline)) for seed in seeds}
            gains = {seed: a - b for seed, (a, b) in pairs.items() if a is not None and b is not None}
            by_seed = ', '.join(f'seed {seed}: {gain:+.4f}' for seed, gain in gains.items())
            cells.append(f'{dataset} {mean_spread(list(gains.values()))} dB ({by_seed})' if gains else f'{dataset} n/a')
        lines.append(f'* {method} - {baseline}: ' + ', '.join(cells))
    return '\n'.join(lines)


def final_psnr_by_seed(method: str, seeds: List[int], dataset: str) -> Dict[int, float]:
    """``{seed: final PSNR}`` on ``dataset`` of the method's finished runs (:func:`final_psnr`)."""
    psnr = {seed: final_psnr(run_name(method, seed), dataset) for seed in run_seeds(method, seeds)}
    return {seed: value for seed, value in psnr.items() if value is not None}


def paired_comparisons(pairs: List[Tuple[str, str]], seeds: List[int],
                       datasets: Tuple[str, ...] = ('Set5', 'Set14')) -> List[PairedComparison]:
    """A - B of the final PSNR-Y paired by seed, per set, for every ``(A, B)`` of ``pairs``: the mean paired
    difference with its 95% Student t interval over seeds (:func:`kdplugins.experiments.statistics.compare_paired`).
    A seed counts where both runs finished; a seed finished on one side only is reported as missing on the other."""
    return [
        compare_paired(final_psnr_by_seed(a, seeds, dataset), final_psnr_by_seed(b, seeds, dataset), a, b, dataset)
        for a, b in pairs for dataset in datasets
    ]


def claim_verdict(comparisons: List[PairedComparison]) -> str:
    """One verdict for a comparison measured on several sets: the sets' verdict when they agree, else
    not resolved."""
    verdicts = {c.verdict for c in comparisons}
    return verdicts.pop() if len(verdicts) == 1 else NOT_RESOLVED


def verdict_lines(key: str, seeds: List[int]) -> str:
    """The claim's verdicts, one line per comparison of :data:`COMPARISONS`: the paired interval on each set and the
    verdict (resolved for / against only where every set's interval excludes 0 on the same side)."""
    lines = []
    for a, b, question in COMPARISONS[key]:
        comparisons = paired_comparisons([(a, b)], seeds)
        cells = []
        for c in comparisons:
            if c.low is not None:
                cells.append(f'{c.dataset} {c.mean:+.4f} [{c.low:+.4f}, {c.high:+.4f}]')
            elif c.mean is not None:
                cells.append(f'{c.dataset} {c.mean:+.4f} (one seed)')
        n = min(c.n for c in comparisons)
        if not n:
            lines.append(f'* **{question}** ({a} - {b}): not measured yet (no seed trained for both).')
            continue
        lines.append(f'* **{question}** ({a} - {b}): {claim_verdict(comparisons)}; {", ".join(cells)} dB, '
                     f'{n} paired seed{"s" if n > 1 else ""}.')
    return '\n'.join(lines)


def paired_table(pairs: List[Tuple[str, str]], seeds: List[int]) -> str:
    """Markdown table of :func:`paired_comparisons` (one row per pair and set, with its verdict)."""
    return '\n'.join([MARKDOWN_HEADER] + [markdown_row(c) for c in paired_comparisons(pairs, seeds)])


def per_image_scores(method: str, seeds: List[int]) -> Dict[int, Dict[str, float]]:
    """``{seed: {'<set>/<image>': PSNR-Y}}`` of the method's finished runs, from their saved students
    (:func:`kdplugins.experiments.per_image.cached_per_image_psnr`, computed once per checkpoint)."""
    import yaml
    scores = {}
    for seed in run_seeds(method, seeds):
        name = run_name(method, seed)
        checkpoint = os.path.join('experiments', name, 'models', 'net_g_latest.pth')
        options_file = os.path.join(OPTIONS_DIR, f'{name}.yml')
        if not (finished(name) and os.path.isfile(checkpoint) and os.path.isfile(options_file)):
            continue
        with open(options_file) as f:
            options = yaml.safe_load(f)
        per_set = cached_per_image_psnr(options, checkpoint)
        scores[seed] = {
            f'{dataset}/{image}': psnr
            for dataset, images in per_set.items()
            for image, psnr in images.items()
        }
    return scores


def per_image_lines(pairs: List[Tuple[str, str]], seeds: List[int]) -> str:
    """One line per ``(A, B)``: on how many of the Set5 + Set14 images A's PSNR-Y (averaged over the paired seeds)
    is above B's (:func:`kdplugins.experiments.statistics.compare_images_over_seeds`)."""
    lines = []
    for a, b in pairs:
        comparison = compare_images_over_seeds(per_image_scores(a, seeds), per_image_scores(b, seeds))
        lines.append(f'* {a} - {b}: ' + (comparison.summary('Set5 + Set14') if comparison.n else 'n/a'))
    return '\n'.join(lines)


# ------------------------------------------------------------------------------------------------------------------
# efficiency of every student and teacher (the AIM 2020 protocol of kdplugins.utils.efficiency)


def efficiency_cache() -> str:
    """``experiments/<run prefix>efficiency.json``: one cache per recipe."""
    return os.path.join('experiments', f'{RECIPE["run_prefix"]}efficiency.json')


def efficiency_networks() -> Dict[str, dict]:
    """The options of every student and teacher of the reproduction, by label."""
    student = RECIPE['student']
    teacher = memsr_network()
    return {
        'RFDN (teacher)':
        dict(RECIPE['teacher']),
        f'EDSR {student["num_feat"]}x{student["num_block"]} (student; CSD student at width {CSD["width_mult"]})':
        dict(student),
        'SlimEDSR at width 1.0 (CSD teacher)':
        slim_edsr(),
        'PixelShuffleEDSR (MemSR teacher)':
        teacher,
        'PlainSR one_pad (MemSR student)': {
            'type': 'PlainSR',
            'widths': [teacher['num_feat']] * (2 * teacher['num_block'] + 2),
            'upscale': RECIPE['scale'],
            'one_pad': True
        },
    }


def efficiency_rows() -> List[dict]:
    """Measured once (LR input 3x256x256, median of 5 forwards) and cached; delete the cache to measure again."""
    import json
    cache = efficiency_cache()
    if os.path.isfile(cache):
        with open(cache) as f:
            return json.load(f)
    import torch

    from kdplugins.utils.efficiency import measure
    rows = []
    for label, options in efficiency_networks().items():
        report = measure(label, options, 256, torch.device('cpu'), repeat=5, warmup=1)
        rows.append({
            'name': label,
            'params': report.counts.params,
            'flops_g': report.counts.flops / 1e9,
            'activations_m': report.counts.activations / 1e6,
            'memory_mib': report.peak_memory_bytes / 2**20,
            'runtime_ms': report.runtime_median_s * 1e3
        })
        print(f'efficiency: {label}: {rows[-1]}', flush=True)
    with open(cache, 'w') as f:
        json.dump(rows, f, indent=1)
    return rows


def efficiency_table(rows: List[dict]) -> str:
    """Markdown table of :func:`efficiency_rows`."""
    lines = [
        '| network | #Params | FLOPs [G] | #Activations [M] | CPU peak memory [MiB] | CPU runtime [ms] |',
        '|---|---:|---:|---:|---:|---:|'
    ]
    for row in rows:
        lines.append(f"| {row['name']} | {row['params']:,} | {row['flops_g']:.2f} | {row['activations_m']:.2f} "
                     f"| {row['memory_mib']:.1f} | {row['runtime_ms']:.0f} |")
    return '\n'.join(lines)


# ------------------------------------------------------------------------------------------------------------------
# checks
def teacher_on_training_crops(data: Dict[str, str], count: int = 64) -> Tuple[float, float]:
    """Mean PSNR-Y (border 4) of the RFDN teacher and of MATLAB bicubic on the first ``count`` training pairs, read
    as the students read them: a check that the teacher is loaded, scaled and aligned on the training data."""
    import torch
    from basicsr.data.paired_image_dataset import PairedImageDataset
    from basicsr.metrics import calculate_psnr
    from basicsr.utils import tensor2img

    from kdplugins.distill.teacher import build_teacher
    from kdplugins.utils.matlab_resize import matlab_resize
    teacher = build_teacher(with_rfdn_teacher(base_options('check', 0, data)), torch.device('cpu'))
    dataset = PairedImageDataset({
        'dataroot_gt': data['train_hr'],
        'dataroot_lq': data['train_lr'],
        'io_backend': {
            'type': 'lmdb'
        },
        'phase': 'val',
        'scale': RECIPE['scale']
    })
    psnr_teacher, psnr_bicubic = [], []
    with torch.no_grad():
        for index in range(min(count, len(dataset))):
            sample = dataset[index]
            lq, gt = sample['lq'][None], tensor2img(sample['gt'])
            for output, scores in ((teacher(lq), psnr_teacher), (matlab_resize(lq, RECIPE['scale']), psnr_bicubic)):
                scores.append(calculate_psnr(tensor2img(output), gt, RECIPE['scale'], test_y_channel=True))
    return float(statistics.mean(psnr_teacher)), float(statistics.mean(psnr_bicubic))


# ------------------------------------------------------------------------------------------------------------------
# report
def mean_curve(method: str, seeds: List[int], dataset: str) -> List[Tuple[int, float]]:
    """Validation PSNR against iteration, averaged over the finished runs (at the iterations every one validated)."""
    names = [run_name(method, seed) for seed in run_seeds(method, seeds) if finished(run_name(method, seed))]
    runs = [dict((i, psnr) for i, psnr, _ in history(name).get(dataset, [])) for name in names]
    runs = [points for points in runs if points]
    if not runs:
        return []
    common = sorted(set.intersection(*(set(points) for points in runs)))
    return [(i, statistics.mean(points[i] for points in runs)) for i in common]


def write_curves(key: str, methods: List[str], seeds: List[int], figures: str) -> Optional[str]:
    """One PNG per claim: Set5 and Set14 PSNR against iteration, one line per method (mean over seeds)."""
    from kdplugins.utils.plots import curves_plot
    panels = {}
    for dataset in ('Set5', 'Set14'):
        curves = {method: mean_curve(method, seeds, dataset) for method in methods}
        panels[dataset] = {method: points for method, points in curves.items() if points}
    if not all(panels.values()):
        return None
    curves_plot(panels, os.path.join(figures, f'psnr_{key}.png'), 'iteration', 'PSNR-Y [dB], mean over seeds')
    return f'figures/{os.path.basename(figures)}/psnr_{key}.png'


def write_tradeoff(rows: List[dict], seeds: List[int], figures: str) -> Optional[str]:
    """Set5 PSNR against CPU runtime (marker: peak memory) of the networks whose PSNR was measured."""
    from kdplugins.utils.plots import tradeoff_plot
    psnr_of = {
        'RFDN (teacher)': teacher_psnr('kd', 'Set5', seeds),
        'SlimEDSR at width 1.0 (CSD teacher)': mean_of(final_scores('jt', seeds), 'Set5_teacher'),
        'PixelShuffleEDSR (MemSR teacher)': mean_of(final_scores('memsr_teacher', seeds), 'Set5'),
        'PlainSR one_pad (MemSR student)': mean_of(final_scores('memsr', seeds), 'Set5'),
    }
    student = next(row['name'] for row in rows if row['name'].startswith('EDSR'))
    psnr_of[student] = mean_of(final_scores('kd', seeds), 'Set5')
    points = [(row['name'].split(' (')[0], row['runtime_ms'], psnr_of[row['name']], row['memory_mib']) for row in rows
              if psnr_of.get(row['name']) is not None]
    if len(points) < 2:
        return None
    tradeoff_plot(points, os.path.join(figures, 'tradeoff.png'), 'Set5 x4 PSNR-Y [dB]', 'CPU runtime, LR 256x256 [ms]')
    return f'figures/{os.path.basename(figures)}/tradeoff.png'


def mean_of(scores: Dict[str, Dict[str, List[float]]], dataset: str) -> Optional[float]:
    """Mean PSNR of ``dataset`` in :func:`final_scores` (None without runs)."""
    values = scores.get(dataset, {}).get('psnr', [])
    return statistics.mean(values) if values else None


def teacher_psnr(method: str, dataset: str, seeds: List[int]) -> Optional[float]:
    """The teacher's PSNR on ``dataset`` as logged by the first of the method's runs that logged it."""
    for seed in seeds:
        found = teacher_scores(run_name(method, seed)).get(dataset)
        if found:
            return found[0]
    return None


def teacher_line(method: str, seeds: List[int]) -> str:
    """The teacher's logged PSNR / SSIM per set, as one line."""
    scores: Dict[str, Tuple[float, float]] = {}
    for seed in seeds:
        scores.update(teacher_scores(run_name(method, seed)))
    return ', '.join(f'{d} {p:.4f} / {s:.4f}' for d, (p, s) in scores.items()) or 'n/a'


def claim_section(key: str,
                  title: str,
                  methods: List[str],
                  seeds: List[int],
                  figures: str,
                  provenance: str = '') -> str:
    """The report's section of one claim of :data:`CLAIMS`: verdicts, tables, paired comparisons, per-image counts and
    the PSNR curves (written to ``figures``); ``provenance`` is a line put under its heading."""
    first_line = provenance
    if key == 'csd' and CSD['vgg_weights'] == 'random':
        first_line += ('**Stability check only**: the contrastive loss ran with an untrained VGG-19 (the ImageNet '
                       "weights are not on this machine), so this table cannot show CSD's claim; that stays open "
                       'here. It shows whether CSD falls below J-T.\n\n')
    table = method_table(methods, seeds)
    if 'jt' in methods:
        table += '\n\nThe teacher (width 1.0) of the same runs:\n\n' + method_table(methods, seeds,
                                                                                    ('Set5_teacher', 'Set14_teacher'))
    if 'memsr' in methods:
        table = method_table(['memsr_teacher'], seeds) + '\n\nStudents:\n\n' + table
    curves = write_curves(key, methods + (['memsr_teacher'] if 'memsr' in methods else []), seeds, figures)
    plot = f'\n![PSNR against iteration: {title}]({curves})\n' if curves else ''
    pairs = [(a, b) for a, b, _ in COMPARISONS[key]]
    gains = '\n'.join(differences([a, b], b, seeds) for a, b in pairs)
    return (f'## {title}\n\n{first_line}Verdicts (mean paired difference of the final PSNR-Y and its 95% Student t '
            f'interval over seeds; resolved only where the interval excludes 0 on both sets):\n\n'
            f'{verdict_lines(key, seeds)}\n\n{table}\n\nThe comparisons per set:\n\n{paired_table(pairs, seeds)}\n\n'
            f'Seed by seed:\n\n{gains or "n/a"}\n\nPer image (each image\'s PSNR-Y averaged over the paired seeds; '
            f'{len(seeds)} seeds planned):\n\n{per_image_lines(pairs, seeds)}\n{plot}')


def replace_sections(text: str, replacements: Dict[str, str], claim_titles: Sequence[str] = ()) -> str:
    """``text`` (a report) with each ``## <title>`` section named in ``replacements`` (title: the new section, heading
    included, as :func:`claim_section` returns it) replaced, up to the next ``## `` heading; a section the report
    does not have yet (a new claim) goes after the last claim section (``claim_titles``); everything else is kept
    verbatim."""
    blocks = re.split(r'(?m)^(?=## )', text)
    titles = [block.splitlines()[0][3:].strip() if block.startswith('## ') else None for block in blocks]
    missing = [title for title in replacements if title not in titles]
    claims = [i for i, title in enumerate(titles) if title in replacements or title in claim_titles]
    last_claim = claims[-1] if claims else len(blocks) - 1
    out = []
    for i, (title, block) in enumerate(zip(titles, blocks)):
        out.append(replacements[title] + '\n' if title in replacements else block)
        if i == last_claim:
            out.extend(replacements[title] + '\n' for title in missing)
    return ''.join(out)


def write_report(seeds: List[int], data: Dict[str, str], command: str, sections: Optional[List[str]] = None) -> None:
    """``docs/results.md`` and its figures (``docs/figures/results/``) from the runs that finished; ``command`` is
    the command line quoted at its top. With ``sections`` (keys of :data:`CLAIMS`), only those claims' sections and
    curves are rebuilt, each under a line quoting ``command``; the rest of the existing report stays as it is."""
    figures_name = os.path.splitext(os.path.basename(RECIPE['report']))[0]  # results, results_gpu
    figures = os.path.join(os.path.dirname(RECIPE['report']), 'figures', figures_name)
    os.makedirs(figures, exist_ok=True)
    if sections:
        provenance = f'This section: produced by `{command}` (scripts/reproduce.py).\n\n'
        replacements = {
            title: claim_section(key, title, methods, seeds, figures, provenance)
            for key, title, methods, _ in CLAIMS if key in sections
        }
        with open(RECIPE['report']) as f:
            text = replace_sections(f.read(), replacements, [title for _, title, _, _ in CLAIMS])
        with open(RECIPE['report'], 'w') as f:
            f.write(text)
        print(f'rebuilt {", ".join(sections)} in {RECIPE["report"]}', flush=True)
        return
    rows = efficiency_rows()
    crops_teacher, crops_bicubic = teacher_on_training_crops(data)
    lambda_c = METHODS['CSD']['contrastive_opt']['loss_weight']
    tradeoff = write_tradeoff(rows, seeds, figures)
    student = RECIPE['student']
    claim_sections = [claim_section(key, title, methods, seeds, figures) for key, title, methods, _ in CLAIMS]
    text = f"""# {RECIPE['title']}

Produced by `{command}` (scripts/reproduce.py); every number below comes from the logs of its runs.

Recipe shared by every run: student `{student['type']}` ({student['num_feat']} features, {student['num_block']}
blocks), HR patch {RECIPE['gt_size']}x{RECIPE['gt_size']}, batch {RECIPE['batch_size']}, {RECIPE['total_iter']}
iterations, Adam lr {RECIPE['lr']} halved at {RECIPE['milestones']} (MemSR students: the one-cycle schedule of
options/train/MemSR), seeds {seeds}. Validation: PSNR/SSIM on Y, border 4, mean ± half the range over seeds, at the
last iteration. Step time: median of the logged iteration times, relative to scratch (the runs shared the 2 cores
with other work: indicative only; docs/augkd.md and docs/crd.md have step costs measured on their own).
Teacher of the first table: pretrained RFDN x4 (PSNR / SSIM-Y: {teacher_line('kd', seeds)}); on the first 64
training pairs, read as the students read them: {crops_teacher:.2f} dB PSNR-Y against {crops_bicubic:.2f} dB for
MATLAB bicubic.
CSD and J-T: width {CSD['width_mult']} student of a SlimEDSR with twice the student's features, HR patch
{CSD['gt_size']}x{CSD['gt_size']}, lambda_c {lambda_c}, {CSD['num_negatives']} negatives, VGG-19 weights:
`{CSD['vgg_weights']}`.

""" + '\n'.join(claim_sections) + diagnostics_section(seeds) + rerun_section(seeds) + f"""
## Efficiency of the students and teachers

LR input 3x256x256, CPU (2 threads), CPU peak tensor memory (docs/efficiency.md), median of 5 forwards.

{efficiency_table(rows)}
""" + (f'\n![Set5 PSNR against CPU runtime, marker area = peak memory]({tradeoff})\n' if tradeoff else '')
    with open(RECIPE['report'], 'w') as f:
        f.write(text)
    print(f'wrote {RECIPE["report"]} and {figures}/', flush=True)
