"""Loss and AP curves of a finished run, from Detectron2's ``metrics.json``."""
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(path):
    """Detectron2's ``metrics.json``: one JSON object per line."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _plot(ax, rows, keys, **style):
    """One curve per key that some row records, against the iteration."""
    for key in keys:
        points = [(r["iteration"], r[key]) for r in rows if key in r]
        if points:
            ax.plot(*zip(*points), label=key, **style)
    ax.legend(fontsize=8)


def plot_metrics(metrics_json, out_png):
    """Plot the training losses and the evaluation AP against iterations."""
    rows = read_metrics(metrics_json)
    fig, (ax_loss, ax_ap) = plt.subplots(1, 2, figsize=(11, 4))
    _plot(ax_loss, rows, ("total_loss", "loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"))
    ax_loss.set(xlabel="iteration", ylabel="loss", title="training losses", yscale="log")
    _plot(ax_ap, rows, ("bbox/AP", "bbox/AP50"), marker="o")
    ax_ap.set(xlabel="iteration", ylabel="AP (%)", title="evaluation", ylim=(0, 100))
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
