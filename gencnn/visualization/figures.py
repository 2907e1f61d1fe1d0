"""Display of HMC samples: input units -> pixels, grids, the Fig. 1 style
trajectory, and the PNG files (written whole or not at all, through
gencnn.files.write_atomic / save_figure)."""
import io
import os

import numpy as np

from gencnn import files

os.environ.setdefault("MPLBACKEND", "Agg")          # no display needed


def to_pixels(x, display, display_mean, box=None):
    """One chain's state (C x H x W, input units) -> H x W [x 3] uint8 image.

    display: "lenet" (x 255), "imagenet" (+ display_mean per channel, BGR ->
    RGB) or "raw" (min-max stretched); box (y0, y1, x0, x1) crops first.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:                      # an N x d input: show it as a square if it is one
        side = int(round(np.sqrt(x.size)))
        x = x.reshape(1, side, -1) if side * side == x.size else x.reshape(1, 1, -1)
    if box is not None:
        y0, y1, x0, x1 = box
        x = x[:, y0:y1, x0:x1]
    if display == "lenet":
        image = x * 255.0
    elif display == "imagenet":
        mean = np.array(display_mean[:x.shape[0]]).reshape(-1, 1, 1)
        image = (x + mean)[::-1]            # BGR -> RGB
    else:
        image = 255.0 * (x - x.min()) / max(x.max() - x.min(), 1e-12)
    image = np.clip(image, 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return image[:, :, 0] if image.shape[2] == 1 else image


def tile(images, rows, cols, min_side=64, gap=2):
    """Images (all one shape) in a rows x cols grid, upscaled (nearest) to at
    least `min_side` pixels each, on a white background."""
    first = images[0]
    zoom = max(1, int(np.ceil(min_side / float(max(first.shape[:2])))))
    h, w = first.shape[0] * zoom, first.shape[1] * zoom
    grid = np.full((rows * (h + gap) + gap, cols * (w + gap) + gap) + first.shape[2:], 255,
                   dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        big = image.repeat(zoom, axis=0).repeat(zoom, axis=1)
        grid[gap + r * (h + gap):gap + r * (h + gap) + h,
             gap + c * (w + gap):gap + c * (w + gap) + w] = big
    return grid


def grid_shape(num_units, chains_per_unit):
    """(rows, cols): one row per unit, or a square-ish grid for one unit."""
    if num_units > 1:
        return num_units, chains_per_unit
    cols = int(np.ceil(np.sqrt(chains_per_unit)))
    return int(np.ceil(chains_per_unit / float(cols))), cols


def save_png(path, image):
    """A uint8 image (H x W gray or H x W x 3 RGB) as a PNG, atomically."""
    import matplotlib.pyplot as plt
    buffer = io.BytesIO()
    plt.imsave(buffer, image, cmap="gray", vmin=0, vmax=255, format="png")
    files.write_atomic(path, buffer.getvalue())


def save_grid(path, states, pixels, rows, cols):
    """States (chains x input shape) as a rows x cols grid PNG; `pixels`
    turns one state into an image (e.g. to_pixels with the display)."""
    save_png(path, tile([pixels(state) for state in states], rows, cols))


def save_trajectory(path, out, pixels, title):
    """Fig. 1 style: chain 0 at a few iterations, then f_y of every chain.
    `out` is HMCSampler.sample's result (snapshot_iters, snapshots, f)."""
    import matplotlib.pyplot as plt
    shots = out["snapshot_iters"]
    fig = plt.figure(figsize=(1.5 * len(shots), 4.2))
    f0 = np.concatenate([[np.nan], out["f"][:, 0]])
    for i, (it, state) in enumerate(zip(shots, out["snapshots"])):
        ax = fig.add_subplot(2, len(shots), i + 1)
        image = pixels(state)
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title("it %d\nf=%.1f" % (it, f0[it]) if it else "start", fontsize=8)
        ax.axis("off")
    ax = fig.add_subplot(2, 1, 2)
    its = np.arange(1, len(out["f"]) + 1)
    ax.plot(its, out["f"], color="0.7", lw=0.5)
    ax.plot(its, out["f"][:, 0], color="C0", lw=1.5, label="chain 0")
    ax.set_xlabel("HMC iteration")
    ax.set_ylabel("f_y(x)")
    ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    files.save_figure(fig, path, dpi=90)
    plt.close(fig)
