"""Loss and AP curves of a finished run, from Detectron2's ``metrics.json``."""
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(path):
    """Detectron2's ``metrics.json``: one JSON object per line."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_metrics(metrics_json, out_png, ap_key="bbox/AP"):
    """Plot the training losses and the evaluation AP against iterations."""
    rows = read_metrics(metrics_json)
    fig, (ax_loss, ax_ap) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("total_loss", "loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"):
        pts = [(r["iteration"], r[key]) for r in rows if key in r]
        if pts:
            ax_loss.plot(*zip(*pts), label=key)
    ax_loss.set(xlabel="iteration", ylabel="loss", title="training losses", yscale="log")
    ax_loss.legend(fontsize=8)
    aps = [(r["iteration"], r[ap_key]) for r in rows if ap_key in r]
    ap50 = [(r["iteration"], r["bbox/AP50"]) for r in rows if "bbox/AP50" in r]
    for pts, label in ((aps, ap_key), (ap50, "bbox/AP50")):
        if pts:
            ax_ap.plot(*zip(*pts), marker="o", label=label)
    ax_ap.set(xlabel="iteration", ylabel="AP (%)", title="evaluation", ylim=(0, 100))
    ax_ap.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
