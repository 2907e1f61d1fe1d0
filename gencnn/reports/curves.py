"""The curves.png of a training run: two_stage's (test error and train
loss per epoch, each stage) and generative_learning's (scores, acceptance
and step size per iteration, test error per epoch)."""
import numpy as np

from gencnn import run_folder
from gencnn.files import save_figure


def two_stage(runs, path, title=None):
    """Test error and train loss per epoch; runs = {label: {"stage1": [...], "stage2": [...]}}."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_err, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    for label, history in runs.items():
        for key, style in (("stage1", "-"), ("stage2", "--")):
            records = history.get(key) or []
            if not records:
                continue
            epochs = [r["epoch"] for r in records]
            name = label if key == "stage1" else "%s (stage 2)" % label
            ax_err.plot(epochs, [r["test_error_pct"] for r in records], style, label=name)
            ax_loss.plot(epochs, [r["train_loss"] for r in records], style, label=name)
    ax_err.set(xlabel="epoch", ylabel="test error (%)", yscale="log")
    ax_loss.set(xlabel="epoch", ylabel="train loss (epoch mean)")
    ax_err.legend(fontsize=8)
    ax_err.grid(True, which="both", alpha=0.3)
    ax_loss.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def generative_learning(tsv_path, history, path):
    """Energy gap, acceptance and step size per iteration; test error per epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = np.array(run_folder.rows_since(tsv_path, 0)).reshape(-1, 12)
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))

    def smooth(v, w=25):
        if len(v) < w:
            return v
        return np.convolve(v, np.ones(w) / w, mode="valid")
    if len(rows):
        it = rows[:, 0]
        for col, label in ((4, "f_y data"), (5, "f_y samples"), (3, "gap")):
            v = smooth(rows[:, col])
            axes[0].plot(it[len(it) - len(v):], v, label=label)
        axes[0].set(xlabel="iteration", ylabel="score (25-it mean)")
        axes[0].legend(fontsize=8)
        v = smooth(rows[:, 6])
        axes[1].plot(it[len(it) - len(v):], v)
        axes[1].set(xlabel="iteration", ylabel="chain acceptance", ylim=(0, 1))
        axes[2].semilogy(it, rows[:, 7])
        axes[2].set(xlabel="iteration", ylabel="HMC step size")
    if history:
        axes[3].plot([r["epoch"] for r in history], [r["test_error_pct"] for r in history], "o-")
    axes[3].set(xlabel="epoch", ylabel="test error (%)")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
