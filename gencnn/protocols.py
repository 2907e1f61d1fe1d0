"""The training protocols: the paper's numbers, one record per net.

Epoch sizes, epochs, the GG+DG switch, base_lr and the lr schedule (a small
dict in Caffe's own terms, {"lr_policy": "step", "gamma": 0.1, "stepsize":
4000}), the solver settings and the paper's reported errors. gencnn/netgen.py
turns them into the committed solvers; gencnn/experiment.py, the tools and the
tests read them here without importing the prototxt generator. Plain Python:
no Caffe import.
"""
import collections
import math

from gencnn.cli import UserError

# The two readings of the paper's "stage 2 starts with a base learning rate of
# 0.003" (section 4.1). `restart`: the stage-1 solver with base_lr x0.3, its
# schedule counted from the switch. `aligned`: base_lr x0.3, then the same
# decays as DG at the same global iterations, so both end at the same relative
# point of their schedules. `aligned` is the default, <net>_gg_dg.prototxt,
# chosen by the CIFAR-10 study (docs/cifar10.md); `restart` is
# <net>_gg_dg_restart.prototxt.
STAGE2_SOLVERS = {"restart": "gg_dg_restart", "aligned": "gg_dg"}   # variant -> solver suffix

# MNIST pixels (0-255) -> LeNet's input units: its transform_param scale, 1/256.
MNIST_SCALE = 0.00390625
# The mean and marginal sd of the MNIST training images in those units (the
# white q fitted to them: hmc_visualize's lenet-digits preset, the sample
# measures' white-q baseline).
MNIST_MEAN, MNIST_STD = 0.1306, 0.3075
STAGE2_LR_SCALE = 0.3       # 0.01 -> 0.003 (paper); 0.001 -> 0.0003 (cifar10_quick)


def epoch_iteration(epochs, epoch_iters):
    """The iteration at which `epochs` epochs of `epoch_iters` iterations are
    done: rounded up, since a part of an iteration is a whole one (less 1e-9,
    so that float error, 16 * 937.5, does not add one). The one epoch ->
    iteration conversion: the protocols, two_stage and generative_learning."""
    return int(math.ceil(epochs * epoch_iters - 1e-9))


def aligned_schedule(schedule, switch_iter, max_iter):
    """DG's schedule continued from global iteration `switch_iter`, counted
    from 0 at the switch: lr(t) / lr(0) = lr_DG(switch + t) / lr_DG(switch).

    step / multistep: DG's remaining boundaries, shifted by the switch, as a
    multistep; inv: base (1 + g (s + t))^-p = base (1 + g s)^-p (1 + g' t)^-p
    with g' = g / (1 + g s), the same power; fixed stays fixed.
    """
    policy = schedule["lr_policy"]
    if policy == "fixed":
        return dict(schedule)
    if policy == "inv":
        gamma = schedule["gamma"] / (1.0 + schedule["gamma"] * switch_iter)
        return {"lr_policy": "inv", "gamma": gamma, "power": schedule["power"]}
    if policy == "step":
        bounds = range(schedule["stepsize"], max_iter, schedule["stepsize"])
    elif policy == "multistep":
        bounds = schedule["stepvalue"]
    else:
        raise ValueError("no aligned form for lr_policy %r" % policy)
    return {"lr_policy": "multistep", "gamma": schedule["gamma"],
            "stepvalue": [b - switch_iter for b in bounds if switch_iter < b < max_iter]}


# ---------------------------------------------------------------------------
# Stage 2's lr schedule as a run takes it (gencnn/two_stage.py)
# ---------------------------------------------------------------------------

def schedule_of(param):
    """The lr schedule fields of SolverParameter `param`, as netgen writes them."""
    schedule = {"lr_policy": param.lr_policy}
    for key in ("gamma", "power", "stepsize"):
        if param.HasField(key):
            schedule[key] = getattr(param, key)
    if param.stepvalue:
        schedule["stepvalue"] = list(param.stepvalue)
    return schedule


def same_schedule(a, b):
    """Equal lr schedules, floats to float32 precision (the proto's)."""
    if a["lr_policy"] != b["lr_policy"]:
        return False
    keys = {"inv": ("gamma", "power"), "step": ("gamma", "stepsize"),
            "multistep": ("gamma", "stepvalue"), "exp": ("gamma",),
            "poly": ("power",), "sigmoid": ("gamma", "stepsize")}.get(a["lr_policy"], ())
    for key in keys:
        x, y = a.get(key), b.get(key)
        if isinstance(x, float) or isinstance(y, float):
            if x is None or y is None or not math.isclose(x, y, rel_tol=1e-6):
                return False
        elif (x or None) != (y or None):
            return False
    return True


def aligned_stage2(stage1_param, stage2_param, switch_iter, total_iters):
    """The lr schedule stage 2 must run with for a switch at `switch_iter`:
    {} when its solver's is right as written. A stage-2 schedule equal to
    stage 1's is the `restart` reading (kept); any other is the `aligned`
    reading, stage 1's schedule continued from the switch
    (protocols.aligned_schedule), so a solver written for the protocol's switch
    is re-derived for the switch this run takes."""
    first, second = schedule_of(stage1_param), schedule_of(stage2_param)
    if same_schedule(first, second):
        return {}
    try:
        wanted = aligned_schedule(first, switch_iter, total_iters)
    except ValueError:
        raise UserError("cannot align stage 2's lr schedule to stage 1's lr_policy %r: give "
                        "stage 2 stage 1's schedule (the restart reading)" % first["lr_policy"])
    return {} if same_schedule(wanted, second) else wanted


class Protocol(object):
    """One net's training protocol: what the solvers (gencnn/netgen.py) and
    the experiment runner (gencnn/experiment.py) share. Iterations are
    global (DG's).

    solver_fields: the solvers' other settings: net (a pattern with %s for
    'dg' or 'gg'), test_iter, test_interval, weight_decay, display, snapshot
    (GG's; dg_snapshot and stage2_snapshot for the others, and
    stage2_test_interval), snapshot_dir, and the notes their headers carry
    (note, test_note, mode_note)."""

    def __init__(self, key, title, epoch_iters, epochs, switch_epoch, base_lr, schedule,
                 paper=None, **solver_fields):
        self.key, self.title = key, title
        self.epoch_iters = epoch_iters
        self.epochs = epochs
        self.max_iter = epoch_iteration(epochs, epoch_iters)
        self.switch_epoch = switch_epoch
        self.switch_iter = epoch_iteration(switch_epoch, epoch_iters)
        self.base_lr = base_lr
        self.schedule = schedule
        self.paper = paper or {}            # {arm: test error %} where the paper has one
        self.fields = solver_fields

    def solver_name(self, arm):
        """'dg', 'gg', 'gg_dg' (aligned, the default) or 'gg_dg_restart' -> solver key."""
        return "%s_%s" % (self.key, arm)

    def stage2_schedule(self, variant):
        if variant == "restart":
            return self.schedule
        return aligned_schedule(self.schedule, self.switch_iter, self.max_iter)


# Paper section 4.1 (MNIST): batch 64, base_lr 0.01, momentum 0.9, weight decay
# 0.0005, 25 epochs; GG+DG: GG for 16 epochs, then DG from base_lr 0.003.
# The lr policy is Caffe's LeNet example ("inv", gamma 1e-4, power 0.75), the
# paper's "settings identical to Jia et al. (2014)". Snapshots every 5,000
# iterations as Caffe's example; 15,000 is the switch (epoch 16 x 937.5).
MNIST_TRAIN_SIZE = 60000
MNIST_EPOCH_ITERS = MNIST_TRAIN_SIZE / 64.0          # 937.5
LENET_PROTOCOL = Protocol(
    "lenet", "LeNet", MNIST_EPOCH_ITERS, 25, 16, 0.01,
    {"lr_policy": "inv", "gamma": 0.0001, "power": 0.75},
    paper={"DG": 1.03, "GG": 0.85, "GG+DG": 0.78},
    net="prototxt/lenet_train_test_%s.prototxt", test_iter=100,
    test_note="100 x 100 = the whole 10,000-image test set",
    test_interval=938, weight_decay=0.0005, display=100, snapshot=5000,
    stage2_snapshot=5000, snapshot_dir="scratch/snapshots/mnist")

# CIFAR-10 (our CPU-sized stand-in for the paper's ImageNet protocol,
# docs/cifar10.md): Caffe's cifar10_quick reference schedule, 10 epochs of
# batch 100: 4,000 iterations at 0.001 then 1,000 at 0.0001 (BVLC's two
# solver files written as one "step" schedule), momentum 0.9, weight decay
# 0.004. GG+DG switches at 45/70 of training as the paper's ImageNet runs do
# (epoch 6.43, iteration 3,215).
CIFAR10_TRAIN_SIZE = 50000
CIFAR10_EPOCH_ITERS = CIFAR10_TRAIN_SIZE // 100      # 500 at batch 100
CIFAR10_PROTOCOL = Protocol(
    "cifar10_quick", "CIFAR-10 quick", CIFAR10_EPOCH_ITERS, 10, 10 * 45 / 70.0, 0.001,
    {"lr_policy": "step", "gamma": 0.1, "stepsize": 4000},
    net="prototxt/cifar10_quick_train_test_%s.prototxt", test_iter=100,
    test_note="100 x 100 = the whole 10,000-image test set",
    test_interval=500, weight_decay=0.004, display=100, snapshot=643, dg_snapshot=500,
    stage2_test_interval=357,     # 1,785 = 5 x 357: the last test falls on max_iter
    stage2_snapshot=500, snapshot_dir="scratch/snapshots/cifar10")
CIFAR10_MAX_ITER = CIFAR10_PROTOCOL.max_iter          # 5,000
CIFAR10_SWITCH_ITER = CIFAR10_PROTOCOL.switch_iter    # 3,215

# ImageNet (paper section 4.1): batch 256, base_lr 0.01, momentum 0.9, weight
# decay 0.0005, 70 epochs of ILSVRC-2012's 1,281,167 training images; GG+DG:
# GG for 45 epochs, then DG from base_lr 0.003. Iteration counts round up.
# BVLC's AlexNet solver steps lr x0.1 every 100,000 of its 450,000 iterations
# (~90 epochs). The paper trains 70 epochs, so the step is scaled by the same
# factor, 100,000 x 350,320 / 450,000 = 77,849 iterations (15.6 epochs): the
# same four decays at the same fractions of training, ending at 1e-6.
IMAGENET_TRAIN_SIZE = 1281167
IMAGENET_EPOCH_ITERS = IMAGENET_TRAIN_SIZE / 256.0  # 5004.56
IMAGENET_MAX_ITER = epoch_iteration(70, IMAGENET_EPOCH_ITERS)         # 350,320
IMAGENET_SWITCH_ITER = epoch_iteration(45, IMAGENET_EPOCH_ITERS)      # 225,206
IMAGENET_STEPSIZE = int(round(100000 * IMAGENET_MAX_ITER / 450000.0))


def _imagenet_protocol(key, title):
    return Protocol(
        key, title, IMAGENET_EPOCH_ITERS, 70, 45, 0.01,
        {"lr_policy": "step", "gamma": 0.1, "stepsize": IMAGENET_STEPSIZE},
        net="prototxt/%s_train_test_%%s.prototxt" % key, test_iter=1000,
        test_note="1000 x 50 = the 50,000 val images",
        test_interval=5005, weight_decay=0.0005, display=20,
        snapshot=IMAGENET_SWITCH_ITER // 2, dg_snapshot=10000, stage2_snapshot=10000,
        snapshot_dir="scratch/snapshots/imagenet",
        note="lr x0.1 every %d iterations: BVLC's step of 100,000 in 450,000 iterations\n"
             "scaled to 70 epochs (100,000 x 350,320 / 450,000); four decays, ending at 1e-6."
             % IMAGENET_STEPSIZE,
        mode_note="run on a GPU with `caffe train -gpu 0` (docs/imagenet.md)")


PROTOCOLS = collections.OrderedDict([
    ("lenet", LENET_PROTOCOL), ("cifar10_quick", CIFAR10_PROTOCOL),
    ("alexnet", _imagenet_protocol("alexnet", "AlexNet")),
    ("zf", _imagenet_protocol("zf", "ZF-fast"))])

# Learning with synthesized images (paper section 5, gencnn/generative_learning.py):
# the net's settings, the defaults of tools/generative_learning.py and of the
# committed prototxt/lenet_train_test_synthesis.prototxt (M synthesized images
# per batch of 64 observed ones, the energy penalty alpha, the DG loss weight;
# gencnn/generative_learning.py DEFAULTS says why dg_weight is 100).
SYNTHESIS_DEFAULTS = {"synthesized": 32, "alpha": 0.0001, "dg_weight": 100.0}
