"""PNG plots of measured results (matplotlib, headless)."""
import matplotlib
from typing import Dict, List, Sequence, Tuple

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
