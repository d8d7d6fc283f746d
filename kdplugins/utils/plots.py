"""PNG plots of measured results (matplotlib, headless)."""
import matplotlib
import numpy as np
from typing import Dict, List, Optional, Sequence, Tuple

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402


def tradeoff_plot(points: Sequence[Tuple[str, float, float, float]], path: str, psnr_label: str,
                  runtime_label: str) -> None:
    """PSNR against runtime, marker area proportional to peak memory (as Fig. 1 of the MemSR paper).

    Args:
        points: ``(name, runtime_ms, psnr_db, peak_memory_mib)`` per network.
        path: the PNG to write.
        psnr_label, runtime_label: axis titles (say which set, which device).
    """
    largest = max(memory for *_, memory in points)
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, runtime, psnr, memory in points:
        ax.scatter(runtime, psnr, s=2000 * memory / largest, alpha=0.4)
        ax.annotate(f'{name}\n{memory:.0f} MiB', (runtime, psnr), ha='center', va='center', fontsize=8)
    ax.set_xlabel(runtime_label)
    ax.set_ylabel(psnr_label)
    ax.grid(True, alpha=0.3)
    ax.margins(0.2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def curves_plot(panels: Dict[str, Dict[str, List[Tuple[int, float]]]], path: str, x_label: str, y_label: str) -> None:
    """One panel per title, one line per name through its ``(x, y)`` points (e.g. validation PSNR against iteration).

    A name has the same colour in every panel.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    names = list(dict.fromkeys(name for curves in panels.values() for name in curves))
    colours = {name: f'C{i % 10}' for i, name in enumerate(names)}
    for ax, (title, curves) in zip(axes[0], panels.items()):
        for name, values in curves.items():
            xs, ys = zip(*sorted(values))
            ax.plot(xs, ys, marker='o', markersize=3, label=name, color=colours[name])
        ax.set_title(title)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def demo_figure(crops: Sequence[Tuple[str, np.ndarray, Optional[float]]],
                window: Tuple[int, int, int],
                points: Sequence[Tuple[str, float, float, float]],
                path: str,
                psnr_label: str,
                runtime_label: str,
                notes: str = '') -> None:
    """Side-by-side crops with their PSNR above a PSNR / runtime / memory trade-off (``make demo``'s picture).

    Args:
        crops: ``(title, RGB uint8 image, PSNR or None)``, all of one size; the same window is cut from each.
        window: ``(top, left, size)`` of the square crop, in pixels.
        points: ``(name, runtime_ms, psnr_db, peak_memory_mib)`` per network, as :func:`tradeoff_plot` takes them.
        path: the PNG to write.
        psnr_label, runtime_label: axis titles of the trade-off.
        notes: text under the picture (what its terms mean).
    """
    top, left, size = window
    fig = plt.figure(figsize=(2.4 * len(crops), 2.6 + 4.2))
    grid = fig.add_gridspec(2, len(crops), height_ratios=[2.6, 4.2])
    for i, (title, image, psnr) in enumerate(crops):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(image[top:top + size, left:left + size], interpolation='nearest')
        label = title.replace(', ', ',\n', 1)
        ax.set_title(label + (f'\n{psnr:.2f} dB' if psnr is not None else '\n(PSNR-Y)'), fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    ax = fig.add_subplot(grid[1, 1:len(crops) - 1])
    largest = max(memory for *_, memory in points)
    for name, runtime, psnr, memory in points:
        ax.scatter(runtime, psnr, s=1500 * memory / largest, alpha=0.4)
        ax.annotate(f'{name}\n{memory:.0f} MiB', (runtime, psnr), ha='center', va='center', fontsize=7)
    ax.set_xlabel(runtime_label)
    ax.set_ylabel(psnr_label)
    ax.set_title('marker area: peak memory of one forward', fontsize=8)
    ax.grid(True, alpha=0.3)
    ax.margins(0.25)
    ax.set_xlim(left=0)  # runtimes on an axis from 0: their ratio reads off the picture
    if notes:
        fig.text(0.01, 0.01, notes, fontsize=7, va='bottom')
    fig.tight_layout(rect=(0, 0.06 if notes else 0, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
